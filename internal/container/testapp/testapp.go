// Package testapp is the program container tests run. Its logic lives here,
// behind System, so that the static binary (cmd/testapp) and the in-memory
// runtime (container/fake) run the same code.
//
// With no arguments or "serve" it is an HTTP server on every port in $PORTS
// (comma-separated, default 8080):
//
//	/echo                the request, environment, args and hostname as JSON
//	/sleep?d=100ms       answers after d
//	/exit?code=N         answers, then exits with N
//	/alloc?mib=N         allocates and touches N MiB, keeps it, answers
//	/log?stream=stdout|stderr&text=T   writes the line T to that stream
//	/net                 interface names and whether a default route exists
//	/stream              echoes the request body back as it arrives
//	/ws                  a WebSocket that answers each message with "echo:"
//	                     and the message, and closes (1000 "bye") on "close"
//	/fetch?url=U         makes a request to U from inside the container and
//	                     answers a FetchReply (see outbound.go)
//	/resolve?host=H      resolves H with the container's DNS (ResolveReply)
//	/boot-fetch          the FetchReply of a GET of $FETCH_AT_BOOT, made
//	                     first thing, before any port listens
//	/crash, /hang, /hangs, /listen, /requests
//	                     faults and observations: see faultRoutes
//
// With REQUEST_LOG=1 it records every request with the port it came in
// on, for /requests.
//
// SIGTERM (or SIGINT) prints "testapp got SIGTERM" and exits with
// $TERM_EXIT_CODE (default 0), unless IGNORE_TERM=1, when it only prints.
//
// Otherwise the first argument is a command, for exec and RUN steps:
//
//	echo ARGS...     prints ARGS joined by spaces
//	cat              copies stdin to stdout until EOF
//	exit N           exits with N
//	stderr TEXT...   prints TEXT to stderr
//	env              prints the environment, one KEY=value per line
//	sleep DURATION   sleeps
//	tty              prints "tty=true cols=C rows=R" or "tty=false"; with a
//	                 terminal it prints the size again on every SIGWINCH and
//	                 exits once stdin ends or a line was read
//	fail-build MSG   prints MSG to stdout and exits 1
//	pwd              prints the working directory
//	id               prints "uid=N"
//	pid              prints "pid=N", its own process id, then waits until
//	                 stdin ends (so that it still runs when asked about)
package testapp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Main runs testapp with sys and returns its exit code. Ending ctx makes it
// return promptly (the fake runtime kills programs that way).
func Main(ctx context.Context, sys System) int {
	p := &program{
		sys:    sys,
		stdout: &lineWriter{w: sys.Stdout()},
		stderr: &lineWriter{w: sys.Stderr()},
		env:    envMap(sys.Environ()),
	}
	args := sys.Args()
	if len(args) > 0 {
		args = args[1:]
	}
	if len(args) == 0 || args[0] == "serve" {
		return p.serve(ctx, args)
	}
	return p.command(ctx, args[0], args[1:])
}

type program struct {
	sys            System
	stdout, stderr *lineWriter
	env            map[string]string
}

func (p *program) command(ctx context.Context, name string, args []string) int {
	switch name {
	case "echo":
		p.stdout.println(strings.Join(args, " "))
	case "cat":
		if _, err := io.Copy(p.stdout, p.sys.Stdin()); err != nil {
			p.stderr.println("testapp cat: " + err.Error())
			return 1
		}
	case "exit":
		if len(args) != 1 {
			return p.usage("exit wants one argument, the code")
		}
		code, err := strconv.Atoi(args[0])
		if err != nil {
			return p.usage(fmt.Sprintf("exit code %q is not a number", args[0]))
		}
		return code
	case "stderr":
		p.stderr.println(strings.Join(args, " "))
	case "env":
		for _, kv := range p.sys.Environ() {
			p.stdout.println(kv)
		}
	case "sleep":
		if len(args) != 1 {
			return p.usage("sleep wants one argument, a duration")
		}
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return p.usage(fmt.Sprintf("sleep: %v", err))
		}
		return p.sleep(ctx, d)
	case "tty":
		return p.tty(ctx)
	case "fail-build":
		p.stdout.println(strings.Join(args, " "))
		return 1
	case "pwd":
		wd, err := p.sys.Getwd()
		if err != nil {
			p.stderr.println("testapp pwd: " + err.Error())
			return 1
		}
		p.stdout.println(wd)
	case "id":
		p.stdout.println(fmt.Sprintf("uid=%d", p.sys.Getuid()))
	case "pid":
		p.stdout.println(fmt.Sprintf("pid=%d", p.sys.Getpid()))
		if _, err := io.Copy(io.Discard, p.sys.Stdin()); err != nil {
			p.stderr.println("testapp pid: " + err.Error())
			return 1
		}
	default:
		return p.usage(fmt.Sprintf("unknown command %q", name))
	}
	return 0
}

func (p *program) usage(problem string) int {
	p.stderr.println("testapp: " + problem)
	p.stderr.println("usage: testapp [serve] | echo ARGS | cat | exit N | stderr TEXT | env | sleep DURATION | tty | fail-build MSG | pwd | id | pid")
	return 2
}

func (p *program) sleep(ctx context.Context, d time.Duration) int {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return 0
		case <-ctx.Done():
			return 1
		case sig := <-p.sys.Signals():
			if isTerm(sig) {
				return 128 + int(syscall.SIGTERM)
			}
		}
	}
}

func (p *program) tty(ctx context.Context) int {
	term := p.sys.Terminal()
	if !term.TTY {
		p.stdout.println("tty=false")
		return 0
	}
	p.printSize(term)
	lineRead := make(chan struct{})
	go func() {
		// Ends on the first line or at EOF, whichever comes first.
		_, _ = bufio.NewReader(p.sys.Stdin()).ReadString('\n')
		close(lineRead)
	}()
	for {
		select {
		case <-lineRead:
			return 0
		case <-ctx.Done():
			return 1
		case sig := <-p.sys.Signals():
			if sig == syscall.SIGWINCH {
				p.printSize(p.sys.Terminal())
			}
		}
	}
}

func (p *program) printSize(t Terminal) {
	p.stdout.println(fmt.Sprintf("tty=true cols=%d rows=%d", t.Cols, t.Rows))
}

func isTerm(sig os.Signal) bool { return sig == syscall.SIGTERM || sig == syscall.SIGINT }

// lineWriter serializes writes so that lines from concurrent handlers do
// not interleave.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (l *lineWriter) println(s string) { _, _ = l.Write([]byte(s + "\n")) }

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

var errBadRequest = errors.New("bad request")

func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}
