// Package fake is an in-memory container.Runtime for fast tests. Images come
// from a small Dockerfile interpreter; containers run Programs (Go functions
// with testapp's signature, usually testapp.Main itself) in goroutines, with
// a testapp.System whose listeners are real loopback sockets, so Dial and
// HTTP work as with Docker. It passes the conformance suite in
// container/runtimetest.
//
// What it models, and how:
//   - A killed container (Destroy, Stop past its grace, SIGKILL, going over
//     its memory limit) is marked exited with code 137 at once; its listeners
//     and connections are closed and its Programs' context is cancelled.
//   - Other signals go to the Program's signal channel. A Program that does
//     not read it ignores them, as a container's PID 1 without handlers does.
//   - Memory is what Programs Alloc; CPU time is the wall time the container
//     spent running and not paused, so it is an upper bound of the real
//     thing.
//   - Pause closes a gate that every System call of the container's Programs
//     (output, Accept, connection reads and writes, Alloc) waits at.
//   - A container without Internet sees only "lo" and no default route; with
//     it, "lo" and "eth0" and a default route.
//   - Starting a container whose executable is missing fails and leaves
//     nothing behind (Docker leaves a created container with code 127).
//   - Outbound traffic (testapp's DialContext, LookupHost, ReadFile) and its
//     interception (Spec.Egress): see egress.go.
package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"iter"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/intercept"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// Program is what the fake runs for an executable: testapp.Main fits. It
// must return once ctx ends.
type Program func(ctx context.Context, sys testapp.System) int

// Options configure a Runtime.
type Options struct {
	// Programs maps absolute executable paths to what runs for them. A
	// container, exec or RUN step runs one when its command names the path
	// and the image has a file there (COPY put it there).
	Programs map[string]Program
	// Now is the clock for timestamps; nil means time.Now.
	Now func() time.Time
	// After is the timer Stop waits out the grace period with; nil means
	// time.After.
	After func(time.Duration) <-chan time.Time
	// EventBuffer is the capacity of each Events channel; 0 means 256.
	EventBuffer int
	// EgressCA signs intercepted HTTPS; nil makes one in memory.
	EgressCA *intercept.CA
}

// Runtime is the in-memory container.Runtime. Its zero value is not usable;
// call New.
type Runtime struct {
	programs map[string]Program
	now      func() time.Time
	after    func(time.Duration) <-chan time.Time
	events   *hub

	mu         sync.Mutex
	seq        int
	images     map[string]*image // by id
	tags       map[string]string // normalized ref to image id
	containers map[string]*box   // by id
	names      map[string]string // name to id
	gone       map[string]container.Exit

	caOnce sync.Once
	ca     *intercept.CA // signs intercepted HTTPS
	caErr  error
}

var (
	_ container.Runtime = (*Runtime)(nil)
	_ container.Pauser  = (*Runtime)(nil)
)

// New returns an empty Runtime.
func New(opts Options) *Runtime {
	rt := &Runtime{
		programs:   map[string]Program{},
		now:        opts.Now,
		after:      opts.After,
		images:     map[string]*image{},
		tags:       map[string]string{},
		containers: map[string]*box{},
		names:      map[string]string{},
		gone:       map[string]container.Exit{},
		ca:         opts.EgressCA,
	}
	for p, prog := range opts.Programs {
		rt.programs[path.Clean(p)] = prog
	}
	if rt.now == nil {
		rt.now = time.Now
	}
	if rt.after == nil {
		rt.after = time.After
	}
	buffer := opts.EventBuffer
	if buffer <= 0 {
		buffer = 256
	}
	rt.events = newHub(buffer)
	return rt
}

const (
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// killedCode is what a process killed by SIGKILL exits with.
	killedCode = 128 + int(syscall.SIGKILL)
)

// box is one fake container. Every field is guarded by Runtime.mu.
type box struct {
	id, name, imageRef string
	img                *image
	labels             map[string]string
	limits             container.Limits
	internet           bool
	egress             *boxEgress // nil: not intercepted
	env                []string
	hostname           string
	uid                int

	created, started time.Time
	running, paused  bool
	exit             *container.Exit
	cpu              time.Duration // up to resumedAt
	resumedAt        time.Time
	memory           int64

	ctx           context.Context // ends when the container is killed or exits
	kill          context.CancelFunc
	done          chan struct{} // closed at exit
	gate          *gate
	signals       chan os.Signal
	pending       []os.Signal // signals sent while paused
	ports         map[int]*portListener
	conns         map[net.Conn]struct{}
	nextEphemeral int
	lastPID       int // the main process is 1, exec processes follow

	logs        []container.LogLine
	logsChanged chan struct{} // closed and replaced on every change
	stdout      *lineLog
	stderr      *lineLog
}

func (c *box) instance() container.Instance {
	inst := container.Instance{
		ID: c.id, Name: c.name, Image: c.imageRef, Labels: copyMap(c.labels),
		Running: c.running, Paused: c.paused, Created: c.created, StartedAt: c.started,
	}
	if c.exit != nil {
		e := *c.exit
		inst.Exit = &e
	}
	return inst
}

func (c *box) accountCPU(now time.Time) {
	if c.running && !c.paused {
		c.cpu += now.Sub(c.resumedAt)
		c.resumedAt = now
	}
}

func (c *box) logsChangedLocked() {
	close(c.logsChanged)
	c.logsChanged = make(chan struct{})
}

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Start creates and starts a container. An Entrypoint in spec also drops
// the image's CMD, as Docker does.
func (rt *Runtime) Start(ctx context.Context, spec container.Spec) (container.Instance, error) {
	if spec.Image == "" {
		return container.Instance{}, fmt.Errorf("start container %q: %w: no image", spec.Name, container.ErrInvalid)
	}
	if spec.Name != "" && !validName.MatchString(spec.Name) {
		return container.Instance{}, fmt.Errorf("start container %q: %w: a name is letters, digits, '_', '.' and '-', not starting with one of the last three", spec.Name, container.ErrInvalid)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	img := rt.lookupImage(spec.Image)
	if img == nil {
		return container.Instance{}, fmt.Errorf("start container %q: image %q: %w", spec.Name, spec.Image, container.ErrImageNotFound)
	}
	if _, taken := rt.names[spec.Name]; spec.Name != "" && taken {
		return container.Instance{}, fmt.Errorf("start container %q: %w: the name is in use", spec.Name, container.ErrAlreadyExists)
	}
	argv := commandLine(img, spec)
	if len(argv) == 0 {
		return container.Instance{}, fmt.Errorf("start container %q: %w: neither the spec nor image %q has a command", spec.Name, container.ErrInvalid, spec.Image)
	}
	uid, err := parseUser(img.user)
	if err != nil {
		return container.Instance{}, fmt.Errorf("start container %q: %w", spec.Name, err)
	}

	rt.seq++
	sum := sha256.Sum256(fmt.Appendf(nil, "container %d %s", rt.seq, spec.Name))
	id := hex.EncodeToString(sum[:])
	name := spec.Name
	if name == "" {
		name = "fake_" + id[:12]
	}
	env := egressEnv(containerEnv(img, spec.Env, id[:12]), spec)
	workDir := img.workDir
	if workDir == "" {
		workDir = "/"
	}
	prog, _, err := rt.findProgram(img, argv[0], env, workDir)
	if err != nil {
		return container.Instance{}, fmt.Errorf("start container %q: %w", name, err)
	}

	labels := copyMap(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[container.LabelManaged] = "1"
	now := rt.now()
	var egress *boxEgress
	if spec.Egress != nil {
		if egress, err = rt.newBoxEgress(spec.Internet, spec.Egress); err != nil {
			return container.Instance{}, fmt.Errorf("start container %q: %w", name, err)
		}
	}
	cctx, kill := context.WithCancel(context.Background())
	c := &box{
		id: id, name: name, imageRef: spec.Image, img: img, labels: labels,
		limits: spec.Limits, internet: spec.Internet, env: env, hostname: id[:12], uid: uid,
		created: now, started: now, running: true, resumedAt: now,
		ctx: cctx, kill: kill, done: make(chan struct{}), gate: newGate(),
		signals: make(chan os.Signal, 16), ports: map[int]*portListener{}, conns: map[net.Conn]struct{}{},
		nextEphemeral: 32768, logsChanged: make(chan struct{}), egress: egress,
	}
	c.stdout = &lineLog{ctx: cctx, gate: c.gate, emit: rt.logEmitter(c, container.Stdout)}
	c.stderr = &lineLog{ctx: cctx, gate: c.gate, emit: rt.logEmitter(c, container.Stderr)}
	rt.containers[id] = c
	rt.names[name] = id

	sys := &system{
		args: argv, env: env,
		stdin:  strings.NewReader(""),
		stdout: c.stdout, stderr: c.stderr,
		signals:  c.signals,
		listen:   rt.listener(c),
		alloc:    rt.allocator(c),
		network:  networkFor(spec.Internet),
		outbound: rt.outboundOf(c),
		hostname: c.hostname, workDir: workDir, uid: uid, pid: 1,
	}
	c.lastPID = 1
	go func() {
		code := prog(cctx, sys)
		c.stdout.flush()
		c.stderr.flush()
		rt.mu.Lock()
		rt.finishLocked(c, code, false)
		rt.mu.Unlock()
	}()
	rt.events.publish(container.Event{Kind: container.EventStart, ID: id, Labels: labels, At: now})
	return c.instance(), nil
}

// commandLine is the container's argv: Docker's rules for merging the
// spec's Entrypoint and Cmd over the image's.
func commandLine(img *image, spec container.Spec) []string {
	entrypoint, cmd := img.entrypoint, img.cmd
	if spec.Entrypoint != nil {
		entrypoint, cmd = spec.Entrypoint, nil
	}
	if spec.Cmd != nil {
		cmd = spec.Cmd
	}
	return append(slices.Clone(entrypoint), cmd...)
}

func containerEnv(img *image, extra map[string]string, hostname string) []string {
	env := slices.Clone(img.env)
	if _, ok := lookupEnv(env, "PATH"); !ok {
		env = append(env, "PATH="+defaultPath)
	}
	env = setEnv(env, "HOSTNAME", hostname)
	return mergeEnv(env, extra)
}

func mergeEnv(env []string, extra map[string]string) []string {
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = setEnv(env, k, extra[k])
	}
	return env
}

// findProgram finds what runs for argv0 in img: a path, or a name looked up
// in $PATH as the kernel's exec would.
func (rt *Runtime) findProgram(img *image, argv0 string, env []string, workDir string) (Program, string, error) {
	var candidates []string
	if strings.Contains(argv0, "/") {
		p := argv0
		if !path.IsAbs(p) {
			p = path.Join(workDir, p)
		}
		candidates = []string{path.Clean(p)}
	} else if argv0 != "" {
		pathVar, _ := lookupEnv(env, "PATH")
		for _, dir := range strings.Split(pathVar, ":") {
			if dir != "" {
				candidates = append(candidates, path.Join(dir, argv0))
			}
		}
	}
	for _, p := range candidates {
		if !img.files[p] {
			continue
		}
		prog := rt.programs[p]
		if prog == nil {
			return nil, "", fmt.Errorf("executable %q is in the image but the fake runtime has no Program for it: %w", p, container.ErrExecutableNotFound)
		}
		return prog, p, nil
	}
	return nil, "", fmt.Errorf("executable %q: %w", argv0, container.ErrExecutableNotFound)
}

func parseUser(user string) (int, error) {
	name, _, _ := strings.Cut(user, ":")
	if name == "" || name == "root" {
		return 0, nil
	}
	uid, err := strconv.Atoi(name)
	if err != nil || uid < 0 {
		return 0, fmt.Errorf("user %q: %w: the fake runtime knows root and numeric users only", user, container.ErrInvalid)
	}
	return uid, nil
}

func (rt *Runtime) logEmitter(c *box, stream container.Stream) func(string) bool {
	return func(text string) bool {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		if c.exit != nil {
			return false
		}
		c.logs = append(c.logs, container.LogLine{Stream: stream, Time: rt.now(), Text: text})
		c.logsChangedLocked()
		return true
	}
}

func (rt *Runtime) listener(c *box) func(network, addr string) (net.Listener, error) {
	return func(network, addr string) (net.Listener, error) {
		switch network {
		case "tcp", "tcp4", "tcp6":
		default:
			return nil, fmt.Errorf("listen %s %s: the fake runtime has TCP only", network, addr)
		}
		_, portText, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s %s: %w", network, addr, err)
		}
		port, err := strconv.Atoi(portText)
		if err != nil || port < 0 || port > 65535 {
			return nil, fmt.Errorf("listen %s %s: bad port %q", network, addr, portText)
		}
		rt.mu.Lock()
		defer rt.mu.Unlock()
		if c.exit != nil {
			return nil, errKilled
		}
		if port == 0 {
			for c.ports[c.nextEphemeral] != nil {
				c.nextEphemeral++
			}
			port = c.nextEphemeral
		}
		if c.ports[port] != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: syscall.EADDRINUSE}
		}
		real, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen %s %s: %w", network, addr, err)
		}
		pl := &portListener{Listener: real, port: port, ctx: c.ctx, gate: c.gate}
		pl.track = func(conn net.Conn) bool {
			rt.mu.Lock()
			defer rt.mu.Unlock()
			if c.exit != nil {
				return false
			}
			c.conns[conn] = struct{}{}
			return true
		}
		pl.untrack = func(conn net.Conn) {
			rt.mu.Lock()
			defer rt.mu.Unlock()
			delete(c.conns, conn)
		}
		pl.closed = func() {
			rt.mu.Lock()
			defer rt.mu.Unlock()
			if c.ports[port] == pl {
				delete(c.ports, port)
			}
		}
		c.ports[port] = pl
		return pl, nil
	}
}

func (rt *Runtime) allocator(c *box) func(mib int) error {
	return func(mib int) error {
		if err := c.gate.wait(c.ctx); err != nil {
			return err
		}
		rt.mu.Lock()
		if c.exit != nil {
			rt.mu.Unlock()
			return errKilled
		}
		c.memory += int64(mib) << 20
		over := c.limits.MemoryBytes > 0 && c.memory > c.limits.MemoryBytes
		rt.mu.Unlock()
		if over {
			rt.killBox(c, true)
			return fmt.Errorf("alloc %d MiB: out of memory: %w", mib, errKilled)
		}
		return nil
	}
}

// killBox kills a container as SIGKILL (or the OOM killer) would.
func (rt *Runtime) killBox(c *box, oom bool) {
	c.stdout.flush()
	c.stderr.flush()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.finishLocked(c, killedCode, oom)
}

// finishLocked records that c's main process ended. The caller holds rt.mu.
func (rt *Runtime) finishLocked(c *box, code int, oom bool) {
	if c.exit != nil {
		return
	}
	now := rt.now()
	c.accountCPU(now)
	c.exit = &container.Exit{Code: code, OOMKilled: oom, At: now}
	c.running, c.paused = false, false
	c.memory = 0
	c.kill()
	for _, l := range c.ports {
		l.Listener.Close()
	}
	c.ports = map[int]*portListener{}
	for conn := range c.conns {
		// The raw connection: gatedConn.Close would take rt.mu again.
		conn.(*gatedConn).Conn.Close()
	}
	c.conns = map[net.Conn]struct{}{}
	if c.egress != nil {
		c.egress.srv.Close() // its connections die with the container
	}
	close(c.done)
	c.logsChangedLocked()
	if oom {
		rt.events.publish(container.Event{Kind: container.EventOOM, ID: c.id, Labels: c.labels, At: now})
	}
	exit := *c.exit
	rt.events.publish(container.Event{Kind: container.EventExit, ID: c.id, Labels: c.labels, Exit: &exit, At: now})
}

// box returns the container with id. The caller holds rt.mu.
func (rt *Runtime) box(op, id string) (*box, error) {
	c := rt.containers[id]
	if c == nil {
		return nil, fmt.Errorf("%s container %q: %w", op, id, container.ErrNotFound)
	}
	return c, nil
}

func (rt *Runtime) Inspect(ctx context.Context, id string) (container.Instance, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	c, err := rt.box("inspect", id)
	if err != nil {
		return container.Instance{}, err
	}
	return c.instance(), nil
}

func (rt *Runtime) List(ctx context.Context, labels map[string]string) ([]container.Instance, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var out []container.Instance
	for _, c := range rt.containers {
		if matchLabels(c.labels, labels) {
			out = append(out, c.instance())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func matchLabels(have, want map[string]string) bool {
	for k, v := range want {
		got, ok := have[k]
		if !ok || (v != "" && got != v) {
			return false
		}
	}
	return true
}

func (rt *Runtime) Wait(ctx context.Context, id string) (container.Exit, error) {
	rt.mu.Lock()
	c := rt.containers[id]
	if c == nil {
		exit, seen := rt.gone[id]
		rt.mu.Unlock()
		if seen {
			return exit, nil
		}
		return container.Exit{}, fmt.Errorf("wait for container %q: %w", id, container.ErrNotFound)
	}
	rt.mu.Unlock()
	select {
	case <-c.done:
		rt.mu.Lock()
		defer rt.mu.Unlock()
		return *c.exit, nil
	case <-ctx.Done():
		return container.Exit{}, fmt.Errorf("wait for container %q: %w", id, ctx.Err())
	}
}

func (rt *Runtime) Signal(ctx context.Context, id string, sig syscall.Signal) error {
	rt.mu.Lock()
	c, err := rt.box("signal", id)
	if err == nil && !c.running {
		err = fmt.Errorf("signal container %q: %w", id, container.ErrNotRunning)
	}
	if err != nil {
		rt.mu.Unlock()
		return err
	}
	if sig == syscall.SIGKILL {
		rt.mu.Unlock()
		rt.killBox(c, false)
		return nil
	}
	rt.signalLocked(c, sig)
	rt.mu.Unlock()
	return nil
}

// signalLocked queues sig for the main Program. A full queue drops it, as
// the kernel coalesces pending signals. The caller holds rt.mu.
func (rt *Runtime) signalLocked(c *box, sig os.Signal) {
	if c.paused {
		c.pending = append(c.pending, sig)
		return
	}
	select {
	case c.signals <- sig:
	default:
	}
}

func (rt *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	rt.mu.Lock()
	c, err := rt.box("stop", id)
	if err != nil {
		rt.mu.Unlock()
		return err
	}
	if !c.running {
		rt.mu.Unlock()
		return nil
	}
	if c.paused {
		rt.unpauseLocked(c)
	}
	rt.signalLocked(c, syscall.SIGTERM)
	rt.mu.Unlock()
	select {
	case <-c.done:
	case <-rt.after(grace):
		rt.killBox(c, false)
	case <-ctx.Done():
		return fmt.Errorf("stop container %q: %w", id, ctx.Err())
	}
	return nil
}

func (rt *Runtime) Destroy(ctx context.Context, id string) error {
	rt.mu.Lock()
	c := rt.containers[id]
	rt.mu.Unlock()
	if c == nil {
		return nil
	}
	rt.killBox(c, false)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.containers[id] != c {
		return nil // a concurrent Destroy won
	}
	delete(rt.containers, id)
	if rt.names[c.name] == id {
		delete(rt.names, c.name)
	}
	rt.gone[id] = *c.exit
	rt.events.publish(container.Event{Kind: container.EventDestroy, ID: id, Labels: c.labels, At: rt.now()})
	return nil
}

func (rt *Runtime) Dial(ctx context.Context, id string, port int) (net.Conn, error) {
	rt.mu.Lock()
	c, err := rt.box("dial", id)
	if err == nil && !c.running {
		err = fmt.Errorf("dial port %d of container %q: %w", port, id, container.ErrNotRunning)
	}
	if err != nil {
		rt.mu.Unlock()
		return nil, err
	}
	pl := c.ports[port]
	rt.mu.Unlock()
	if pl == nil {
		return nil, fmt.Errorf("dial port %d of container %q: %w", port, id, container.ErrPortNotListening)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", pl.Listener.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("dial port %d of container %q: %w: %v", port, id, container.ErrPortNotListening, err)
	}
	return conn, nil
}

// Logs yields the container's output. LogOptions.Since keeps lines at or
// after it.
func (rt *Runtime) Logs(ctx context.Context, id string, opts container.LogOptions) iter.Seq2[container.LogLine, error] {
	return func(yield func(container.LogLine, error) bool) {
		rt.mu.Lock()
		c, err := rt.box("logs of", id)
		if err != nil {
			rt.mu.Unlock()
			yield(container.LogLine{}, err)
			return
		}
		lines := sinceFilter(c.logs, opts.Since)
		if opts.Tail > 0 && len(lines) > opts.Tail {
			lines = lines[len(lines)-opts.Tail:]
		}
		next := len(c.logs)
		exited := c.exit != nil
		changed := c.logsChanged
		rt.mu.Unlock()
		for {
			for _, l := range lines {
				if !yield(l, nil) {
					return
				}
			}
			if !opts.Follow || exited {
				return
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
			rt.mu.Lock()
			lines = sinceFilter(c.logs[next:], opts.Since)
			next = len(c.logs)
			exited = c.exit != nil
			changed = c.logsChanged
			rt.mu.Unlock()
		}
	}
}

func sinceFilter(lines []container.LogLine, since time.Time) []container.LogLine {
	out := make([]container.LogLine, 0, len(lines))
	for _, l := range lines {
		if since.IsZero() || !l.Time.Before(since) {
			out = append(out, l)
		}
	}
	return out
}

// Stats reports CPU as the wall time the container ran unpaused, and memory
// as what its Programs allocated.
func (rt *Runtime) Stats(ctx context.Context, id string) (container.Stats, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	c, err := rt.box("stats of", id)
	if err != nil {
		return container.Stats{}, err
	}
	now := rt.now()
	c.accountCPU(now)
	return container.Stats{CPU: c.cpu, MemoryBytes: c.memory, MemoryLimitBytes: c.limits.MemoryBytes, At: now}, nil
}

func (rt *Runtime) Events(ctx context.Context) <-chan container.Event {
	return rt.events.subscribe(ctx)
}

// Pause freezes a running container. Pausing a paused one is not an error.
func (rt *Runtime) Pause(ctx context.Context, id string) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	c, err := rt.box("pause", id)
	if err != nil {
		return err
	}
	if !c.running {
		return fmt.Errorf("pause container %q: %w", id, container.ErrNotRunning)
	}
	if c.paused {
		return nil
	}
	now := rt.now()
	c.accountCPU(now)
	c.paused = true
	c.gate.close()
	rt.events.publish(container.Event{Kind: container.EventPause, ID: id, Labels: c.labels, At: now})
	return nil
}

// Unpause thaws a paused container. Unpausing one that is not paused is not
// an error.
func (rt *Runtime) Unpause(ctx context.Context, id string) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	c, err := rt.box("unpause", id)
	if err != nil {
		return err
	}
	if !c.running {
		return fmt.Errorf("unpause container %q: %w", id, container.ErrNotRunning)
	}
	rt.unpauseLocked(c)
	return nil
}

func (rt *Runtime) unpauseLocked(c *box) {
	if !c.paused {
		return
	}
	now := rt.now()
	c.paused = false
	c.resumedAt = now
	c.gate.reopen()
	for _, sig := range c.pending {
		rt.signalLocked(c, sig)
	}
	c.pending = nil
	rt.events.publish(container.Event{Kind: container.EventUnpause, ID: c.id, Labels: c.labels, At: now})
}

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}
