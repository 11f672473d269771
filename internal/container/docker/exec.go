package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	dcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
)

// defaultPath is the PATH runc gives a process whose environment has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Exec implements container.Runtime. The engine itself would start a
// missing executable and report exit 126 with the OCI error on stdout, so
// the executable is looked up first.
func (r *Runtime) Exec(ctx context.Context, id string, spec container.ExecSpec) (container.Process, error) {
	if len(spec.Cmd) == 0 || spec.Cmd[0] == "" {
		return nil, fmt.Errorf("exec in container %s: %w: no command given", shortID(id), container.ErrInvalid)
	}
	op := fmt.Sprintf("exec %q in container %s", spec.Cmd[0], shortID(id))
	res, err := r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, wrapErr(op, err)
	}
	c := res.Container
	if c.State == nil || !c.State.Running {
		return nil, fmt.Errorf("%s: %w", op, container.ErrNotRunning)
	}
	if c.State.Paused {
		return nil, fmt.Errorf("%s: %w: it is paused", op, container.ErrNotRunning)
	}
	if err := r.checkExecutable(ctx, c, spec); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var size client.ConsoleSize
	if spec.TTY && spec.Size.Cols > 0 && spec.Size.Rows > 0 {
		size = client.ConsoleSize{Height: spec.Size.Rows, Width: spec.Size.Cols}
	}
	created, err := r.api.ExecCreate(ctx, c.ID, client.ExecCreateOptions{
		User:         spec.User,
		TTY:          spec.TTY,
		ConsoleSize:  size,
		AttachStdin:  spec.Stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
		Env:          envList(spec.Env),
		WorkingDir:   spec.WorkDir,
		Cmd:          spec.Cmd,
	})
	if err != nil {
		return nil, wrapErr(op, err)
	}
	attached, err := r.api.ExecAttach(ctx, created.ID, client.ExecAttachOptions{TTY: spec.TTY, ConsoleSize: size})
	if err != nil {
		return nil, wrapErr(op, err)
	}
	p := &process{r: r, id: created.ID, name: spec.Cmd[0], tty: spec.TTY, done: make(chan struct{})}
	if size.Width > 0 {
		// Engines before API 1.42 ignore the size given at create; the
		// process may see 0x0 until this resize lands.
		if err := p.Resize(ctx, spec.Size); err != nil {
			r.log.Debug("initial exec resize failed", "err", err)
		}
	}
	if spec.Stdin != nil {
		go func() {
			io.Copy(attached.Conn, spec.Stdin)
			attached.CloseWrite()
		}()
	}
	go p.pump(attached, spec)
	p.pid = p.containerPID(ctx)
	return p, nil
}

// containerPID waits until the engine reports the exec's process running
// and translates its PID, which is the host's, into the container's PID
// namespace: the last entry of NSpid in /proc/PID/status. Like Signal this
// needs berth on the engine's host. It returns 0 when the process ended
// before its PID could be read, or when the host's /proc is not the
// engine's.
func (p *process) containerPID(ctx context.Context) int {
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		res, err := p.r.api.ExecInspect(ctx, p.id, client.ExecInspectOptions{})
		if err != nil {
			p.r.log.Debug("exec pid: inspect failed", "exec", p.name, "err", err)
			return 0
		}
		if res.PID > 0 {
			if !res.Running {
				return 0
			}
			pid, err := namespacePID(res.PID)
			if err != nil {
				p.r.log.Debug("exec pid: not readable from /proc", "exec", p.name, "host_pid", res.PID, "err", err)
				return 0
			}
			return pid
		}
		// Not started yet; the output ending means it never will.
		select {
		case <-p.done:
			return 0
		case <-ctx.Done():
			return 0
		case <-time.After(delay):
		}
	}
}

// namespacePID reads the innermost PID of the host process hostPID from its
// NSpid line, whose first entry is the PID in the namespace of this /proc.
func namespacePID(hostPID int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", hostPID))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "NSpid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 || f[0] != strconv.Itoa(hostPID) {
			return 0, fmt.Errorf("NSpid %q does not start with host pid %d: this /proc is not the engine's", strings.TrimSpace(rest), hostPID)
		}
		return strconv.Atoi(f[len(f)-1])
	}
	return 0, errors.New("no NSpid line")
}

// checkExecutable looks the exec's program up the way the runtime will.
func (r *Runtime) checkExecutable(ctx context.Context, c dcontainer.InspectResponse, spec container.ExecSpec) error {
	workDir := spec.WorkDir
	if workDir == "" && c.Config != nil {
		workDir = c.Config.WorkingDir
	}
	pathEnv, ok := spec.Env["PATH"]
	if !ok {
		pathEnv, ok = containerPath(c)
	}
	if !ok {
		pathEnv = defaultPath
	}
	return r.lookPath(ctx, c.ID, spec.Cmd[0], pathEnv, workDir)
}

// containerPath is PATH from the container's environment.
func containerPath(c dcontainer.InspectResponse) (string, bool) {
	if c.Config == nil {
		return "", false
	}
	for _, kv := range c.Config.Env {
		if v, found := strings.CutPrefix(kv, "PATH="); found {
			return v, true
		}
	}
	return "", false
}

// lookPath finds name in the container's filesystem (which it may read
// whether or not the container runs): as a path when it has a slash, else
// along pathEnv.
func (r *Runtime) lookPath(ctx context.Context, id, name, pathEnv, workDir string) error {
	if workDir == "" {
		workDir = "/"
	}
	var candidates []string
	if strings.Contains(name, "/") {
		candidates = []string{resolvePath(workDir, name)}
	} else {
		for _, dir := range strings.Split(pathEnv, ":") {
			if dir == "" {
				dir = "."
			}
			candidates = append(candidates, resolvePath(workDir, path.Join(dir, name)))
		}
	}
	for _, p := range candidates {
		st, err := r.api.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: p})
		if err == nil && !st.Stat.Mode.IsDir() {
			return nil
		}
		if err != nil && !cerrdefs.IsNotFound(err) {
			return wrapErr(fmt.Sprintf("look up %q", p), err)
		}
	}
	return fmt.Errorf("%w: %q", container.ErrExecutableNotFound, name)
}

func resolvePath(dir, p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(dir, p)
}

type process struct {
	r    *Runtime
	id   string
	name string
	tty  bool
	pid  int // in the container's PID namespace; 0 if unknown

	done chan struct{}
	code int
	err  error
}

// ociFailure is how the engine reports an exec the runtime could not start.
const ociFailure = "OCI runtime exec failed"

// pump copies the output until the process closes it, then reads the exit
// code.
func (p *process) pump(attached client.ExecAttachResult, spec container.ExecSpec) {
	defer close(p.done)
	stdout, stderr := spec.Stdout, spec.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	head := &headWriter{max: 512}
	stdout = io.MultiWriter(head, stdout)
	var err error
	if p.tty {
		_, err = io.Copy(stdout, attached.Reader)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, attached.Reader)
	}
	attached.Close()
	if err != nil {
		p.err = fmt.Errorf("exec %q: reading output: %w", p.name, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		res, err := p.r.api.ExecInspect(ctx, p.id, client.ExecInspectOptions{})
		if err != nil {
			p.err = wrapErr(fmt.Sprintf("exec %q: read exit code", p.name), err)
			return
		}
		// The output can end a moment before the engine records the exit.
		if !res.Running {
			p.code = res.ExitCode
			break
		}
		select {
		case <-ctx.Done():
			p.err = fmt.Errorf("exec %q: read exit code: %w", p.name, ctx.Err())
			return
		case <-time.After(delay):
		}
	}
	// The lookup above can be raced (or fooled by a dangling symlink); the
	// engine then reports the failure as output and exit 126 or 127.
	if text := head.String(); (p.code == 126 || p.code == 127) && strings.Contains(text, ociFailure) &&
		(strings.Contains(text, "not found") || strings.Contains(text, "no such file or directory")) {
		p.err = fmt.Errorf("exec %q: %w: %s", p.name, container.ErrExecutableNotFound, strings.TrimSpace(text))
	}
}

func (p *process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return p.code, p.err
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for exec %q: %w", p.name, ctx.Err())
	}
}

// PID implements container.Process.
func (p *process) PID() int { return p.pid }

func (p *process) Resize(ctx context.Context, size container.TermSize) error {
	if !p.tty {
		return fmt.Errorf("resize exec %q: %w: it has no terminal", p.name, container.ErrInvalid)
	}
	_, err := p.r.api.ExecResize(ctx, p.id, client.ExecResizeOptions{Height: size.Rows, Width: size.Cols})
	return wrapErr(fmt.Sprintf("resize exec %q", p.name), err)
}

// Signal signals the exec's process by its host PID, which the engine
// reports: the Engine API has no call to signal an exec. It needs berth to
// run on the engine's host with the right to signal the process (as root
// does), which is where berth dev runs.
func (p *process) Signal(ctx context.Context, sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	// Right after the start the engine may not have recorded the process
	// yet: wait a moment for its PID.
	var res client.ExecInspectResult
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		var err error
		res, err = p.r.api.ExecInspect(ctx, p.id, client.ExecInspectOptions{})
		if err != nil {
			return wrapErr(fmt.Sprintf("signal exec %q", p.name), err)
		}
		if res.Running && res.PID > 0 {
			break
		}
		select {
		case <-p.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("signal exec %q: %w", p.name, ctx.Err())
		case <-time.After(delay):
		}
	}
	if err := syscall.Kill(res.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal exec %q (host pid %d): %w", p.name, res.PID, err)
	}
	return nil
}

// headWriter keeps the first max bytes written to it.
type headWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *headWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (w *headWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}
