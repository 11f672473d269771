// Command app is the container of the sandbox example: an HTTP API that runs
// posted shell code inside this container and returns its output.
//
// The code runs in a POSIX shell interpreter (mvdan.cc/sh) inside this
// process, since the image is FROM scratch and holds no /bin/sh. Besides the
// shell's builtins (echo, printf, read, test, cd, export, …) it offers cat,
// ls, mkdir, rm and sleep. Each run has a deadline and capped output; files
// written under /workspace stay there for the next run of the same session,
// because a session is one container.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

const (
	workspace      = "/workspace"
	defaultTimeout = 10 * time.Second
	maxTimeout     = 60 * time.Second
	maxCodeBytes   = 256 << 10
	// maxOutputBytes caps stdout and stderr each; the rest is dropped and
	// the response says so.
	maxOutputBytes = 1 << 20
)

// execRequest is the body of POST /exec.
type execRequest struct {
	Command   string `json:"command"`
	TimeoutMS int    `json:"timeout_ms,omitempty"`
	Stdin     string `json:"stdin,omitempty"`
}

// execResult is its answer.
type execResult struct {
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	ExitCode   int    `json:"exit_code"`
	TimedOut   bool   `json:"timed_out"`
	Truncated  bool   `json:"truncated"`
	DurationMS int64  `json:"duration_ms"`
	Run        int64  `json:"run"`
}

func main() {
	if err := os.MkdirAll(workspace, 0o755); err != nil {
		log.Fatalf("sandbox: %v", err)
	}
	host, _ := os.Hostname()
	var runs atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"sandbox": host, "runs": runs.Load()})
	})
	mux.HandleFunc("POST /exec", func(w http.ResponseWriter, r *http.Request) {
		var req execRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCodeBytes)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: want JSON {\"command\": \"…\", \"timeout_ms\": N}: " + err.Error()})
			return
		}
		timeout := defaultTimeout
		switch {
		case req.TimeoutMS < 0:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("timeout_ms %d: want a positive number of milliseconds", req.TimeoutMS)})
			return
		case req.TimeoutMS > 0:
			timeout = min(time.Duration(req.TimeoutMS)*time.Millisecond, maxTimeout)
		}
		file, err := syntax.NewParser().Parse(strings.NewReader(req.Command), "command")
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "command: " + err.Error()})
			return
		}
		res := run(r.Context(), file, req.Stdin, timeout)
		res.Run = runs.Add(1)
		writeJSON(w, http.StatusOK, res)
	})
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("sandbox: listening on %s", srv.Addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// run interprets file with a deadline. A run cut off by the deadline exits
// 124, as coreutils' timeout does.
func run(ctx context.Context, file *syntax.File, stdin string, timeout time.Duration) execResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stdout, stderr := &cappedBuffer{max: maxOutputBytes}, &cappedBuffer{max: maxOutputBytes}
	env := append(os.Environ(), "HOME="+workspace, "PWD="+workspace)
	runner, err := interp.New(
		interp.Dir(workspace),
		interp.Env(expand.ListEnviron(env...)),
		interp.StdIO(strings.NewReader(stdin), stdout, stderr),
		interp.ExecHandlers(commands),
	)
	start := time.Now()
	if err == nil {
		err = runner.Run(ctx, file)
	}
	res := execResult{DurationMS: time.Since(start).Milliseconds()}
	var status interp.ExitStatus
	switch isExit := errors.As(err, &status); {
	case ctx.Err() == context.DeadlineExceeded:
		res.TimedOut, res.ExitCode = true, 124
		fmt.Fprintf(stderr, "sandbox: timed out after %s\n", timeout)
	case isExit:
		res.ExitCode = int(status)
	case err != nil:
		res.ExitCode = 1
		fmt.Fprintf(stderr, "sandbox: %v\n", err)
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	res.Truncated = stdout.dropped || stderr.dropped
	return res
}

// commands adds the few programs a scratch image lacks; anything else goes
// to the interpreter's default, which finds nothing on PATH here.
func commands(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	return func(ctx context.Context, args []string) error {
		hc := interp.HandlerCtx(ctx)
		abs := func(p string) string {
			if filepath.IsAbs(p) {
				return p
			}
			return filepath.Join(hc.Dir, p)
		}
		fail := func(format string, a ...any) error {
			fmt.Fprintf(hc.Stderr, args[0]+": "+format+"\n", a...)
			return interp.ExitStatus(1)
		}
		switch args[0] {
		case "sleep":
			if len(args) != 2 {
				return fail("usage: sleep SECONDS")
			}
			secs, err := strconv.ParseFloat(args[1], 64)
			if err != nil || secs < 0 {
				return fail("invalid time interval %q", args[1])
			}
			select {
			case <-time.After(time.Duration(secs * float64(time.Second))):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		case "cat":
			if len(args) == 1 {
				_, err := io.Copy(hc.Stdout, hc.Stdin)
				return err
			}
			for _, name := range args[1:] {
				f, err := os.Open(abs(name))
				if err != nil {
					return fail("%v", err)
				}
				_, err = io.Copy(hc.Stdout, f)
				f.Close()
				if err != nil {
					return fail("%v", err)
				}
			}
			return nil
		case "ls":
			dirs := args[1:]
			if len(dirs) == 0 {
				dirs = []string{"."}
			}
			for _, dir := range dirs {
				entries, err := os.ReadDir(abs(dir))
				if err != nil {
					return fail("%v", err)
				}
				names := make([]string, 0, len(entries))
				for _, e := range entries {
					names = append(names, e.Name())
				}
				slices.Sort(names)
				for _, n := range names {
					fmt.Fprintln(hc.Stdout, n)
				}
			}
			return nil
		case "mkdir":
			for _, dir := range args[1:] {
				if dir == "-p" {
					continue
				}
				if err := os.MkdirAll(abs(dir), 0o755); err != nil {
					return fail("%v", err)
				}
			}
			return nil
		case "rm":
			for _, name := range args[1:] {
				if err := os.Remove(abs(name)); err != nil {
					return fail("%v", err)
				}
			}
			return nil
		}
		return next(ctx, args)
	}
}

// cappedBuffer keeps the first max bytes written and drops the rest, so a
// runaway command cannot exhaust the container's memory.
type cappedBuffer struct {
	bytes.Buffer
	max     int
	dropped bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.dropped = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
