package fake

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// Exec runs a Program in a running container. The process shares the
// container's memory accounting, freezes with it and dies with it (code 137).
func (rt *Runtime) Exec(ctx context.Context, id string, spec container.ExecSpec) (container.Process, error) {
	if len(spec.Cmd) == 0 {
		return nil, fmt.Errorf("exec in container %q: %w: empty command", id, container.ErrInvalid)
	}
	rt.mu.Lock()
	c, err := rt.box("exec in", id)
	switch {
	case err != nil:
	case !c.running:
		err = fmt.Errorf("exec in container %q: %w", id, container.ErrNotRunning)
	case c.paused:
		err = fmt.Errorf("exec in container %q: %w: it is paused", id, container.ErrNotRunning)
	}
	if err != nil {
		rt.mu.Unlock()
		return nil, err
	}
	env := mergeEnv(append([]string(nil), c.env...), spec.Env)
	workDir := spec.WorkDir
	if workDir == "" {
		workDir = c.img.workDir
	}
	workDir = path.Join("/", workDir)
	prog, _, err := rt.findProgram(c.img, spec.Cmd[0], env, workDir)
	uid := c.uid
	if err == nil && spec.User != "" {
		uid, err = parseUser(spec.User)
	}
	pctx, cancel := context.WithCancel(c.ctx)
	pid := 0
	if err == nil {
		c.lastPID++
		pid = c.lastPID
	}
	rt.mu.Unlock()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("exec %q in container %q: %w", spec.Cmd[0], id, err)
	}

	p := &process{pid: pid, tty: spec.TTY, size: spec.Size, signals: make(chan os.Signal, 16), done: make(chan struct{}), kill: cancel}
	stdout := &execWriter{ctx: pctx, gate: c.gate, tty: spec.TTY, w: orDiscard(spec.Stdout)}
	var stderr io.Writer = stdout
	if !spec.TTY {
		stderr = &execWriter{ctx: pctx, gate: c.gate, w: orDiscard(spec.Stderr)}
	}
	var stdin io.Reader = strings.NewReader("")
	var stdinPipe *io.PipeReader
	if spec.Stdin != nil {
		pr, pw := io.Pipe()
		stdin, stdinPipe = pr, pr
		go func() {
			_, err := io.Copy(pw, spec.Stdin)
			pw.CloseWithError(err) // nil closes with EOF
		}()
	}
	sys := &system{
		args: spec.Cmd, env: env,
		stdin: stdin, stdout: stdout, stderr: stderr,
		signals:  p.signals,
		listen:   rt.listener(c),
		alloc:    rt.allocator(c),
		network:  networkFor(c.internet),
		outbound: rt.outboundOf(c),
		terminal: func() testapp.Terminal {
			p.mu.Lock()
			defer p.mu.Unlock()
			return testapp.Terminal{TTY: p.tty, Cols: int(p.size.Cols), Rows: int(p.size.Rows)}
		},
		hostname: c.hostname, workDir: workDir, uid: uid, pid: pid,
	}
	go func() {
		defer cancel()
		code := prog(pctx, sys)
		if c.ctx.Err() != nil || p.killed.Load() {
			code = killedCode
		}
		if stdinPipe != nil {
			stdinPipe.Close() // unblocks the copier if the program stopped reading
		}
		p.code = code
		close(p.done)
	}()
	return p, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

type process struct {
	pid     int
	tty     bool
	signals chan os.Signal
	done    chan struct{}
	code    int // set before done is closed
	kill    context.CancelFunc
	killed  atomic.Bool

	mu   sync.Mutex
	size container.TermSize
}

func (p *process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return p.code, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for exec: %w", ctx.Err())
	}
}

// PID implements container.Process: the fake numbers a container's
// processes from 1, its main process.
func (p *process) PID() int { return p.pid }

// Signal delivers sig to the program; SIGKILL ends it at once (code 137),
// as the kernel would.
func (p *process) Signal(ctx context.Context, sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if sig == syscall.SIGKILL {
		p.killed.Store(true)
		p.kill()
		return nil
	}
	select {
	case p.signals <- sig:
	default:
	}
	return nil
}

// Resize sets the terminal size and sends SIGWINCH, as a terminal does.
func (p *process) Resize(ctx context.Context, size container.TermSize) error {
	if !p.tty {
		return fmt.Errorf("resize exec: %w: the process has no terminal", container.ErrInvalid)
	}
	select {
	case <-p.done:
		return fmt.Errorf("resize exec: %w: the process has exited", container.ErrNotRunning)
	default:
	}
	p.mu.Lock()
	p.size = size
	p.mu.Unlock()
	select {
	case p.signals <- syscall.SIGWINCH:
	default:
	}
	return nil
}
