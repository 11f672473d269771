#!/usr/bin/env bash
# Docker engine housekeeping for make run and make test.
#
#   engine.sh up      make sure an engine answers: install Debian's docker.io and
#                     start dockerd if needed (as root); records the PID of a
#                     dockerd it started in $BERTH_CACHE/dockerd.pid
#   engine.sh down    stop the dockerd that "up" started, by its PID; leaves any
#                     other engine alone
#   engine.sh sweep   remove containers and images labelled berth.test=1
#
# Idempotent: running "up" twice starts nothing the second time.
set -euo pipefail

cache=${BERTH_CACHE:-.cache}
pidfile=$cache/dockerd.pid
sock=${DOCKER_HOST:-unix:///var/run/docker.sock}
sock=${sock#unix://}

answers() {
	curl -fsS --max-time 2 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1
}

up() {
	answers && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "engine.sh: no Docker engine answers at $sock; install Debian's docker.io and start dockerd (as root: apt-get install docker.io && dockerd &)" >&2
		exit 1
	fi
	if ! command -v dockerd >/dev/null 2>&1; then
		echo "engine.sh: installing Debian's docker.io" >&2
		export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
		apt-get update -qq >/dev/null
		apt-get install -y -qq docker.io >/dev/null
	fi
	mkdir -p "$cache"
	echo "engine.sh: starting dockerd (log: $cache/dockerd.log)" >&2
	# setsid: the engine must outlive make's process group for "make run".
	setsid dockerd >"$cache/dockerd.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	for _ in $(seq 1 150); do
		answers && return 0
		kill -0 "$(cat "$pidfile")" 2>/dev/null || break
		sleep 0.2
	done
	echo "engine.sh: dockerd did not answer within 30 s; last lines of $cache/dockerd.log:" >&2
	tail -n 20 "$cache/dockerd.log" >&2 || true
	exit 1
}

down() {
	[ -f "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	rm -f "$pidfile"
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid"
	for _ in $(seq 1 150); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	echo "engine.sh: dockerd $pid did not stop within 30 s; killing it" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

sweep() {
	answers || return 0
	local ids
	ids=$(curl -fsS --unix-socket "$sock" -G http://localhost/containers/json \
		--data-urlencode all=1 --data-urlencode 'filters={"label":["berth.test=1"]}' |
		grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4 || true)
	for id in $ids; do
		echo "engine.sh: removing leftover test container ${id:0:12}" >&2
		curl -fsS -X DELETE --unix-socket "$sock" "http://localhost/containers/$id?force=1&v=1" >/dev/null || true
	done
	ids=$(curl -fsS --unix-socket "$sock" -G http://localhost/images/json \
		--data-urlencode 'filters={"label":["berth.test=1"]}' |
		grep -o '"Id":"sha256:[0-9a-f]*"' | cut -d'"' -f4 || true)
	for id in $ids; do
		echo "engine.sh: removing leftover test image ${id:7:12}" >&2
		curl -fsS -X DELETE --unix-socket "$sock" "http://localhost/images/$id?force=1" >/dev/null || true
	done
}

case "${1:-}" in
up | down | sweep) "$1" ;;
*)
	echo "usage: engine.sh up|down|sweep" >&2
	exit 2
	;;
esac
