// Package container is berth's container driver layer: it builds images and
// runs, watches and drives containers. It knows nothing of JavaScript, Workers
// or Durable Objects; those layers reach containers only through Runtime.
//
// Two implementations exist: container/docker (the Docker Engine API) and
// container/fake (in memory, for fast tests). Both must pass the conformance
// suite in container/runtimetest, which is the executable form of the
// contracts written in the doc comments below.
package container

import (
	"context"
	"io"
	"iter"
	"net"
	"syscall"
	"time"
)

// Labels every berth container carries. LabelManaged ("1") is what List and
// the events stream filter on; the others name the owner so that a restarted
// berth can hand a running container back to its Durable Object.
const (
	LabelManaged = "berth.managed"
	LabelApp     = "berth.app"
	LabelClass   = "berth.class"
	LabelObject  = "berth.object"
	// LabelTest marks everything a test creates, so that it can be swept.
	LabelTest = "berth.test"
)

// Runtime runs containers. All methods are safe for concurrent use.
//
// Ids are the runtime's own container ids as returned by Start. A method
// given an id the runtime does not know returns an error wrapping ErrNotFound,
// except Destroy, which is idempotent.
type Runtime interface {
	Images

	// Start creates a container from spec and starts it. It returns once the
	// container's process runs; it does not wait for any port to listen. The
	// container carries spec.Labels plus LabelManaged=1. An entrypoint the
	// image lacks is an error wrapping ErrExecutableNotFound that names it,
	// and no container is left behind.
	Start(ctx context.Context, spec Spec) (Instance, error)

	// Inspect returns the current state of one container.
	Inspect(ctx context.Context, id string) (Instance, error)

	// List returns every container carrying LabelManaged=1 and all of the
	// given labels (an empty value matches any value), running or not.
	List(ctx context.Context, labels map[string]string) ([]Instance, error)

	// Wait blocks until the container has exited and returns how. If it has
	// already exited, Wait returns at once. Wait on a destroyed container
	// returns its exit if the runtime saw it, otherwise ErrNotFound. It is fed
	// by the runtime's single events stream: it never polls.
	Wait(ctx context.Context, id string) (Exit, error)

	// Signal sends sig to the container's main process. Signalling a container
	// that is not running returns an error wrapping ErrNotRunning.
	Signal(ctx context.Context, id string, sig syscall.Signal) error

	// Stop sends SIGTERM, waits up to grace for the process to exit, then
	// kills it. The container is left in place (stopped). Stopping a stopped
	// container is not an error.
	Stop(ctx context.Context, id string, grace time.Duration) error

	// Destroy kills the container if it runs and removes it with its
	// writable layer. It is idempotent: destroying an unknown or already
	// destroyed container returns nil.
	Destroy(ctx context.Context, id string) error

	// Dial opens a TCP connection to port inside the container. Only berth
	// can do this: container ports are never reachable from other hosts.
	// Dialing a port nothing listens on fails fast with an error wrapping
	// ErrPortNotListening; dialing a container that does not run returns an
	// error wrapping ErrNotRunning.
	Dial(ctx context.Context, id string, port int) (net.Conn, error)

	// Exec starts cmd inside the running container and returns once it
	// runs (its PID is known). An executable that does not exist in the
	// container is an error wrapping ErrExecutableNotFound that names it;
	// the process never starts.
	Exec(ctx context.Context, id string, spec ExecSpec) (Process, error)

	// Logs yields the container's output lines in order. With Follow it keeps
	// yielding until the container exits or ctx ends; a ctx that ends is not
	// reported as an error.
	Logs(ctx context.Context, id string, opts LogOptions) iter.Seq2[LogLine, error]

	// Stats returns cumulative CPU time and current memory use.
	Stats(ctx context.Context, id string) (Stats, error)

	// Events delivers the lifecycle events of every berth container from
	// one stream until ctx ends, then closes the channel. A slow reader does
	// not block the runtime: the channel is buffered and, when full, events
	// are dropped and the next delivered event has Dropped set.
	Events(ctx context.Context) <-chan Event
}

// Pauser is implemented by runtimes that can freeze a container's processes
// (the cgroup freezer) and thaw them again, which wakes a container in tens of
// milliseconds where a fresh start takes hundreds. A paused container keeps its
// memory; Instance.Paused reports the state.
type Pauser interface {
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
}

// Images resolves and builds the images containers start from.
type Images interface {
	// Build builds an image from a Dockerfile and tags it spec.Tag. Build
	// output is written to spec.Progress as it arrives. A missing Dockerfile
	// or context is an error wrapping ErrInvalid; a failed step is an error
	// wrapping ErrBuildFailed whose text includes that step's output.
	Build(ctx context.Context, spec BuildSpec) (Image, error)

	// Resolve returns a local image by reference, pulling it if it is not
	// local. An image that is neither local nor pullable is an error wrapping
	// ErrImageNotFound that names the reference.
	Resolve(ctx context.Context, ref string) (Image, error)

	// RemoveImage removes an image by reference or id. Removing an image that
	// does not exist is not an error.
	RemoveImage(ctx context.Context, ref string) error
}

// Spec describes a container to start.
type Spec struct {
	// Name is the container's name; empty lets the runtime choose. Starting
	// a second container with a name in use is an error wrapping
	// ErrAlreadyExists.
	Name  string
	Image string
	// Entrypoint and Cmd override the image's when non-nil.
	Entrypoint []string
	Cmd        []string
	// Env is merged over the image's environment.
	Env    map[string]string
	Labels map[string]string
	Limits Limits
	// Internet lets the container open connections to the outside world.
	// Off, it has no route out at all: every connect fails at once.
	Internet bool
	// Egress, when not nil, intercepts the container's outbound HTTP and
	// HTTPS through the live table from the container's first instruction
	// on (see Egress; Internet off then means "only through Egress").
	// Only runtimes that are Interceptors support it.
	Egress *Egress
}

// Limits are the resources a container may use. Zero means no limit.
type Limits struct {
	NanoCPUs    int64 // 1e9 is one full CPU
	MemoryBytes int64
	Pids        int64
	// DiskBytes caps the writable layer where the storage driver can; where
	// it cannot, the runtime logs that once and starts the container anyway.
	DiskBytes int64
}

// Instance is a container as the runtime sees it.
type Instance struct {
	ID      string
	Name    string
	Image   string
	Labels  map[string]string
	Running bool
	Paused  bool
	Created time.Time
	// StartedAt is zero for a container that never started.
	StartedAt time.Time
	// Exit is set once the container has stopped.
	Exit *Exit
}

// Exit is how a container's main process ended.
type Exit struct {
	Code int
	// OOMKilled is true when the kernel killed the process for exceeding its
	// memory limit.
	OOMKilled bool
	At        time.Time
}

// ExecSpec describes a process to start in a running container.
type ExecSpec struct {
	Cmd     []string
	Env     map[string]string
	WorkDir string
	User    string
	// TTY gives the process a terminal; Stderr is then merged into Stdout.
	TTY bool
	// Size is the terminal's initial size when TTY is set.
	Size TermSize
	// Stdin, when not nil, is copied to the process until EOF, after which
	// the process's stdin is closed. Nil means the process gets no stdin.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output; nil discards it.
	Stdout io.Writer
	Stderr io.Writer
}

// TermSize is a terminal size in character cells.
type TermSize struct{ Cols, Rows uint }

// Process is a command running inside a container.
type Process interface {
	// Wait blocks until the process has exited and all of its output has
	// been written to the ExecSpec writers, and returns its exit code.
	Wait(ctx context.Context) (int, error)
	// PID is the process's id in the container's PID namespace: what the
	// process sees as its own pid. It is 0 when the runtime could not learn
	// it, as when the process ended before it could be read.
	PID() int
	// Resize changes the terminal size of a TTY process; resizing a
	// process without a terminal is an error wrapping ErrInvalid.
	Resize(ctx context.Context, size TermSize) error
	// Signal sends sig to the process (exec's kill()). Signalling a process
	// that has exited is not an error.
	Signal(ctx context.Context, sig syscall.Signal) error
}

// LogOptions select which output Logs yields.
type LogOptions struct {
	Follow bool
	// Since skips lines written before it; zero means from the start.
	Since time.Time
	// Tail limits the output to the last Tail lines; zero means all.
	Tail int
}

// Stream names an output stream of a container.
type Stream uint8

const (
	Stdout Stream = 1
	Stderr Stream = 2
)

func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return "unknown"
}

// LogLine is one line of container output, without its newline.
type LogLine struct {
	Stream Stream
	Time   time.Time
	Text   string
}

// Stats is a point-in-time reading of a container's resource use.
type Stats struct {
	// CPU is the CPU time the container has used since it started.
	CPU time.Duration
	// MemoryBytes is the memory it uses now.
	MemoryBytes int64
	// MemoryLimitBytes is its limit, or 0 when unlimited.
	MemoryLimitBytes int64
	At               time.Time
}

// EventKind names a container lifecycle event.
type EventKind string

const (
	EventStart   EventKind = "start"
	EventExit    EventKind = "exit" // the main process ended; Event.Exit is set
	EventOOM     EventKind = "oom"
	EventPause   EventKind = "pause"
	EventUnpause EventKind = "unpause"
	EventDestroy EventKind = "destroy"
)

// Event is a lifecycle change of one berth container.
type Event struct {
	Kind   EventKind
	ID     string
	Labels map[string]string
	Exit   *Exit
	At     time.Time
	// Dropped is set when events before this one were dropped because the
	// reader fell behind; a reader that cares re-lists.
	Dropped bool
}

// BuildSpec describes an image build.
type BuildSpec struct {
	// ContextDir is the build context; Dockerfile is a path to the
	// Dockerfile, relative to ContextDir unless absolute.
	ContextDir string
	Dockerfile string
	Tag        string
	Args       map[string]string
	Labels     map[string]string
	Progress   io.Writer
}

// Image is a local image.
type Image struct {
	ID   string
	Refs []string
	// ExposedPorts are the TCP ports the image declares with EXPOSE.
	ExposedPorts []int
	Labels       map[string]string
}
