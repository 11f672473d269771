// Command berth-egress-init holds a container's program back until berth
// intercepts the container's outbound traffic, so that the program's first
// connection is already intercepted, as on Cloudflare.
//
// berth bind-mounts it into a container started with interception and makes
// it the entrypoint, with the program's command line as its arguments. It
// polls 127.0.0.1:15001 inside the container, where berth listens only
// after its redirect rules are in place, and then executes the program in
// its own place (same process). If berth has not listened within
// BERTH_EGRESS_INIT_TIMEOUT (a Go duration, default 60s) it exits with code
// 125 rather than run the program without interception.
//
// It runs in images built FROM scratch: build it static (CGO_ENABLED=0),
// as `make build` does, and keep it next to the berth binary or in $PATH.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

const (
	gate         = "127.0.0.1:15001"
	pollInterval = time.Millisecond
)

func main() {
	if len(os.Args) < 2 {
		fail(2, "usage: berth-egress-init PROGRAM [ARGS...]")
	}
	timeout := 60 * time.Second
	if v := os.Getenv("BERTH_EGRESS_INIT_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			timeout = d
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp4", gate, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			fail(125, fmt.Sprintf("outbound interception was not ready after %s (%v); not starting %s", timeout, err, os.Args[1]))
		}
		time.Sleep(pollInterval)
	}
	prog := os.Args[1]
	if !strings.Contains(prog, "/") {
		p, err := exec.LookPath(prog)
		if err != nil && !errors.Is(err, exec.ErrDot) {
			fail(127, fmt.Sprintf("%s: executable file not found in $PATH", prog))
		}
		prog = p
	}
	err := syscall.Exec(prog, os.Args[1:], os.Environ())
	code := 126
	if errors.Is(err, syscall.ENOENT) {
		code = 127
	}
	fail(code, fmt.Sprintf("exec %s: %v", prog, err))
}

func fail(code int, msg string) {
	fmt.Fprintln(os.Stderr, "berth-egress-init: "+msg)
	os.Exit(code)
}
