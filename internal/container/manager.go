package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/time/rate"

	"github.com/berth-dev/berth/internal/clock"
)

// Defaults of ManagerConfig and ClassConfig.
const (
	// DefaultMaxInstances is Cloudflare's max_instances when a config names
	// none.
	DefaultMaxInstances = 20
	// DefaultStartsPerSecond is the start-rate guard per class. It is
	// generous: it exists to turn a runaway start loop into clear errors,
	// not to shape normal traffic.
	DefaultStartsPerSecond = 50
	// DefaultStopGrace is how long a stop waits after SIGTERM before it
	// kills, as `docker stop` does.
	DefaultStopGrace = 10 * time.Second
	// DefaultDeepSleepAfter is how long a paused container stays paused
	// before it is stopped (see SleepPause).
	DefaultDeepSleepAfter = 10 * time.Minute
)

// Errors of the Manager. Their texts are the ones Cloudflare's runtime uses
// where user code (the @cloudflare/containers package) matches on them.
var (
	// ErrAlreadyRunning: Start on an owner whose container runs.
	ErrAlreadyRunning error = &classified{"the container is already running", errdefs.ErrFailedPrecondition}
	// ErrNoInstance: the class already runs max_instances containers.
	ErrNoInstance error = &classified{"there is no container instance that can be provided to this durable object", errdefs.ErrResourceExhausted}
	// ErrTooManyStarts: the class's start-rate guard refused a start.
	ErrTooManyStarts error = &classified{"you are requesting too many containers per second", errdefs.ErrResourceExhausted}
	// ErrManagerClosed: the Manager was shut down.
	ErrManagerClosed error = &classified{"the container manager is shut down", errdefs.ErrUnavailable}
)

// ExitError is how Monitor reports a container that ended on its own with a
// non-zero code. Its text ends with the code, which is what Cloudflare's
// texts promise and what @cloudflare/containers parses the code from.
type ExitError struct {
	Code int
	// Signalled is set when the Manager had sent the container a signal
	// (Signal, or a stop it began) and the code is 128+signal, which is how
	// a process ended by a signal exits.
	Signalled bool
	// OOMKilled is set when the kernel killed the process for exceeding its
	// memory limit.
	OOMKilled bool
}

func (e *ExitError) Error() string {
	if e.Signalled {
		return fmt.Sprintf("runtime signalled the container to exit: %d", e.Code)
	}
	return fmt.Sprintf("container exited with unexpected exit code: %d", e.Code)
}

// Owner names the Durable Object a container belongs to within the app of
// one Manager: there is at most one container per Owner.
type Owner struct {
	Class  string // the Durable Object class the container is configured on
	Object string // the object's id (64 hex digits on Cloudflare)
}

func (o Owner) String() string { return o.Class + "/" + o.Object }

// Clock is the time source; tests inject a manual one so they do not sleep.
type Clock = clock.Clock

// SleepMode is what the Manager does with a container that has been idle
// for its inactivity timeout.
type SleepMode string

const (
	// SleepStop stops it (SIGTERM, SIGKILL after the grace), as Cloudflare
	// does. Monitor reports the stop as a clean one.
	SleepStop SleepMode = "stop"
	// SleepPause freezes it (the cgroup freezer), which keeps its memory
	// and wakes in about 30 ms instead of a cold start; the container still
	// runs and counts against max_instances. Dial, Exec and Signal wake it.
	// After DeepSleepAfter paused it is stopped as with SleepStop. It needs
	// a Runtime that is a Pauser.
	SleepPause SleepMode = "pause"
)

// ClassConfig is the container configuration of one Durable Object class.
type ClassConfig struct {
	// Image is the reference containers start from, already built or
	// resolved (see PrepareImage).
	Image  string
	Limits Limits
	// MaxInstances caps how many containers of the class run at once; 0
	// means DefaultMaxInstances (unless NoInstances is set) and a negative
	// value means no cap.
	MaxInstances int
	// NoInstances lets no container of the class start: every Start fails
	// with ErrNoInstance. It is how a config's explicit max_instances: 0 is
	// expressed, since a zero MaxInstances means the default.
	NoInstances bool
	// StartsPerSecond caps the start rate (with a burst of one second's
	// worth); 0 means DefaultStartsPerSecond.
	StartsPerSecond float64
	// DefaultPort is the port Dial uses when given 0.
	DefaultPort int
	// Env is merged over the image's environment; StartOptions.Env is
	// merged over it.
	Env map[string]string
	// InactivityTimeout is the idle time after which a container sleeps
	// until SetInactivityTimeout changes it; 0 means never (a container
	// then runs until it exits, is destroyed or the Manager shuts down).
	InactivityTimeout time.Duration
	// Sleep is SleepStop when empty.
	Sleep SleepMode
	// DeepSleepAfter applies to SleepPause; 0 means DefaultDeepSleepAfter.
	DeepSleepAfter time.Duration
}

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// App names the app; it goes into every container's name and
	// LabelApp, so two Managers must not share one.
	App     string
	Runtime Runtime
	Logger  *slog.Logger // nil means slog.Default
	Clock   Clock        // nil means the wall clock
	// Classes maps Durable Object class names to their containers.
	Classes map[string]ClassConfig
	// StopGrace is the SIGTERM-to-SIGKILL grace of a sleep stop and of a
	// SIGTERM sent with Signal (see there); 0 means DefaultStopGrace.
	StopGrace time.Duration
	// Labels go on every container (under the owner labels), e.g.
	// LabelTest in tests.
	Labels map[string]string
	// BootWait is how long after its start a container's port may refuse
	// connections before Dial reports it not listening: within it, Dial
	// retries every BootPoll. Apps bind their port within milliseconds of
	// starting, while callers such as @cloudflare/containers poll a refused
	// port every 300 ms, so waiting here takes most of that from a cold
	// start. 0 disables it (Dial fails at once, as Cloudflare's runtime
	// does).
	BootWait time.Duration
}

// BootPoll is how often Dial retries a refused port within BootWait.
const BootPoll = 2 * time.Millisecond

// StartOptions are what a Durable Object passes when it starts its
// container (ctx.container.start()).
type StartOptions struct {
	// Entrypoint, when not empty, replaces the image's CMD (not its
	// ENTRYPOINT), as workerd does.
	Entrypoint []string
	// Env is merged over the class's and the image's environment.
	Env map[string]string
	// EnableInternet gives the container a route out; off, every outbound
	// connect fails.
	EnableInternet bool
	// Labels go on the container. Keys starting with "berth." are reserved.
	Labels map[string]string
}

// Manager runs the containers of one app's Durable Objects: at most one per
// Owner, at most MaxInstances per class, put to sleep when idle, and
// re-attached after a restart of berth. It is what ctx.container reaches.
// All methods are safe for concurrent use.
//
// Per Owner, Start, Signal, Destroy and Status are serialized in arrival
// order (workerd's getRpcTurn), as are a sleep the inactivity timer begins
// and the kill at the end of a SIGTERM's stop grace (see Signal),
// and Monitor waits for the calls ahead of it before it looks at the
// container: one never observes another half done. Dial, DialIdle, Use,
// Inspect, Exec, Hold, Activity, Running and SetInactivityTimeout do not wait
// for that turn (they take it only to wake a paused container).
//
// Owners of different classes, and different owners of one class, proceed
// in parallel. Concurrent Starts of one Owner start one container: the
// first to arrive starts it and the others fail with ErrAlreadyRunning (a caller
// that wants to join an in-flight start coalesces above the Manager, as
// @cloudflare/containers does).
type Manager struct {
	app    string
	rt     Runtime
	pauser Pauser // nil when rt cannot pause
	log    *slog.Logger
	clock  Clock
	grace  time.Duration
	labels map[string]string
	// bootWait: see ManagerConfig.BootWait.
	bootWait time.Duration
	started  time.Time

	ctx    context.Context // ends at Shutdown; bounds sleeps and watchers
	cancel context.CancelFunc
	wg     sync.WaitGroup // watchers and kills after a stop grace

	mu      sync.Mutex
	closed  bool
	classes map[string]*class
	slots   map[Owner]*slot
}

type class struct {
	name    string
	cfg     ClassConfig
	max     int // < 0: no cap
	limiter *rate.Limiter
	inUse   int // running containers plus starts admitted and in flight
}

// slot is one Owner's state. Fields are guarded by Manager.mu; the turn
// chain orders the calls that act on the container.
type slot struct {
	owner Owner
	cls   *class
	tail  chan struct{} // closed when the latest turn taker is done; nil: free

	// attached is set once the runtime was asked for this owner's
	// container, so that a container that outlived a berth restart is found.
	attached bool
	run      *run // the current or the latest run; nil before any
	// stale are ids of the owner's stopped containers, kept (for their logs)
	// until the next Start, Destroy or Shutdown removes them.
	stale []string
	// egress is the owner's outbound interception (manager_egress.go);
	// nil until its first rule.
	egress *Egress

	inactivity time.Duration
	lastActive time.Time
	holds      int
	// Traffic into the container (Use, a Dial not closed) is a part of
	// holds tracked apart: see Traffic.
	traffic     int
	lastTraffic time.Time
	paused      bool
	pausedAt    time.Time
	timerStop   func() bool
	timerSeq    uint64
}

// run is one container of an Owner, from Start (or adoption) to its end.
type run struct {
	id, name string
	started  time.Time     // when Start returned; zero for a re-attached run
	done     chan struct{} // closed when the run ended; result is set
	result   error

	// Why it may end; guarded by Manager.mu.
	destroyed     bool
	destroyReason error
	cleanStop     bool // the Manager stopped it to sleep
	signalled     bool // the Manager sent it a signal
	removed       bool // the container is gone from the runtime (or never was)
	// killStop cancels the SIGKILL a SIGTERM sent with Signal armed for
	// the end of the stop grace; nil when none is armed.
	killStop func() bool
}

// disarmKillLocked cancels r's pending SIGKILL, if any. The caller holds
// Manager.mu.
func (r *run) disarmKillLocked() {
	if r.killStop != nil {
		r.killStop()
		r.killStop = nil
	}
}

func (r *run) ended() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// NewManager checks cfg and returns a Manager. It does not touch the
// runtime: call Recover at startup to take over containers that outlived a
// previous berth.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.App == "" {
		return nil, fmt.Errorf("container manager: %w: no app name", ErrInvalid)
	}
	if cfg.Runtime == nil {
		return nil, fmt.Errorf("container manager of app %q: %w: no runtime", cfg.App, ErrInvalid)
	}
	if cfg.StopGrace < 0 {
		return nil, fmt.Errorf("container manager of app %q: %w: stop grace %s is negative", cfg.App, ErrInvalid, cfg.StopGrace)
	}
	if cfg.BootWait < 0 {
		return nil, fmt.Errorf("container manager of app %q: %w: boot wait %s is negative", cfg.App, ErrInvalid, cfg.BootWait)
	}
	if err := checkLabels(cfg.Labels, false); err != nil {
		return nil, fmt.Errorf("container manager of app %q: %w", cfg.App, err)
	}
	pauser, _ := cfg.Runtime.(Pauser)
	m := &Manager{
		app:      cfg.App,
		rt:       cfg.Runtime,
		pauser:   pauser,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		grace:    cfg.StopGrace,
		bootWait: cfg.BootWait,
		labels:   maps.Clone(cfg.Labels),
		classes:  make(map[string]*class, len(cfg.Classes)),
		slots:    make(map[Owner]*slot),
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.clock == nil {
		m.clock = clock.Real{}
	}
	if m.grace == 0 {
		m.grace = DefaultStopGrace
	}
	for name, cc := range cfg.Classes {
		c, err := newClass(name, cc, pauser != nil)
		if err != nil {
			return nil, fmt.Errorf("container manager of app %q: %w", cfg.App, err)
		}
		m.classes[name] = c
	}
	m.started = m.clock.Now()
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

func newClass(name string, cc ClassConfig, canPause bool) (*class, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("class %q: %w: %s", name, ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch {
	case name == "":
		return nil, fmt.Errorf("class with an empty name: %w", ErrInvalid)
	case cc.Image == "":
		return nil, fail("no image")
	case cc.StartsPerSecond < 0:
		return nil, fail("starts per second %g is negative", cc.StartsPerSecond)
	case cc.DefaultPort < 0 || cc.DefaultPort > 65535:
		return nil, fail("default port %d is not in 1-65535", cc.DefaultPort)
	case cc.InactivityTimeout < 0:
		return nil, fail("inactivity timeout %s is negative", cc.InactivityTimeout)
	case cc.DeepSleepAfter < 0:
		return nil, fail("deep sleep after %s is negative", cc.DeepSleepAfter)
	}
	switch cc.Sleep {
	case "":
		cc.Sleep = SleepStop
	case SleepStop:
	case SleepPause:
		if !canPause {
			return nil, fail("sleep mode %q needs a runtime that can pause containers", cc.Sleep)
		}
	default:
		return nil, fail("sleep mode %q: want %q or %q", cc.Sleep, SleepStop, SleepPause)
	}
	if err := checkEnv(cc.Env); err != nil {
		return nil, fmt.Errorf("class %q: %w", name, err)
	}
	if cc.DeepSleepAfter == 0 {
		cc.DeepSleepAfter = DefaultDeepSleepAfter
	}
	c := &class{name: name, cfg: cc, max: cc.MaxInstances}
	switch {
	case cc.NoInstances:
		c.max = 0
	case c.max == 0:
		c.max = DefaultMaxInstances
	}
	perSecond := cc.StartsPerSecond
	if perSecond == 0 {
		perSecond = DefaultStartsPerSecond
	}
	c.limiter = rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond)))
	return c, nil
}

func checkEnv(env map[string]string) error {
	for k := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("environment variable %q: %w: a name is not empty and has no '=' or NUL", k, ErrInvalid)
		}
	}
	return nil
}

// checkLabels rejects empty keys and, for labels from user code, the
// reserved "berth." prefix.
func checkLabels(labels map[string]string, fromUser bool) error {
	for k := range labels {
		if k == "" {
			return fmt.Errorf("label with an empty key: %w", ErrInvalid)
		}
		if fromUser && strings.HasPrefix(k, "berth.") {
			return fmt.Errorf("label %q: %w: the prefix \"berth.\" is reserved", k, ErrInvalid)
		}
	}
	return nil
}

// slotFor returns owner's slot, creating it, after checking owner.
func (m *Manager) slotFor(owner Owner) (*slot, error) {
	if owner.Object == "" {
		return nil, fmt.Errorf("container of %s: %w: empty object id", owner, ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.slots[owner]; s != nil {
		return s, nil
	}
	c := m.classes[owner.Class]
	if c == nil {
		names := slices.Sorted(maps.Keys(m.classes))
		return nil, fmt.Errorf("container of %s: %w: class %q has no container configured (configured: %s)",
			owner, ErrInvalid, owner.Class, strings.Join(names, ", "))
	}
	now := m.clock.Now()
	s := &slot{owner: owner, cls: c, inactivity: c.cfg.InactivityTimeout, lastActive: now, lastTraffic: now}
	m.slots[owner] = s
	return s, nil
}

// takeTurn waits for owner's turn among the mutating calls (see turn) and
// returns its slot with the function that ends the turn.
func (m *Manager) takeTurn(ctx context.Context, owner Owner) (*slot, func(), error) {
	s, err := m.slotFor(owner)
	if err != nil {
		return nil, nil, err
	}
	release, err := m.turn(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	return s, release, nil
}

// turn waits for owner's earlier calls to finish, in arrival order. The
// caller must call release once done. If ctx ends first, the place in line
// is handed on when the call before finishes.
func (m *Manager) turn(ctx context.Context, s *slot) (release func(), err error) {
	m.mu.Lock()
	prev := s.tail
	mine := make(chan struct{})
	s.tail = mine
	m.mu.Unlock()
	done := sync.OnceFunc(func() { close(mine) })
	if prev == nil {
		return done, nil
	}
	select {
	case <-prev:
		return done, nil
	case <-ctx.Done():
		go func() {
			<-prev
			done()
		}()
		return nil, fmt.Errorf("wait for the turn of the container of %s: %w", s.owner, ctx.Err())
	}
}

// Status reports whether owner's container runs. The first call for an
// owner asks the runtime, so that a container that kept running across a
// berth restart is re-attached (and a stopped leftover removed).
func (m *Manager) Status(ctx context.Context, owner Owner) (bool, error) {
	s, release, err := m.takeTurn(ctx, owner)
	if err != nil {
		return false, err
	}
	defer release()
	if err := m.attachHeld(ctx, s); err != nil {
		return false, err
	}
	return m.Running(owner), nil
}

// Running reports without waiting whether owner's container runs, as far as
// the Manager knows: before Status or Recover attached the owner it cannot
// know of a container a previous berth started.
func (m *Manager) Running(owner Owner) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slots[owner]
	return s != nil && s.run != nil && !s.run.ended()
}

// attachHeld looks for owner's container in the runtime once. The caller
// holds the turn.
func (m *Manager) attachHeld(ctx context.Context, s *slot) error {
	m.mu.Lock()
	attached := s.attached
	m.mu.Unlock()
	if attached {
		return nil
	}
	found, err := m.rt.List(ctx, m.ownerLabels(s.owner))
	if err != nil {
		return fmt.Errorf("find the container of %s: %w", s.owner, err)
	}
	return m.adoptHeld(ctx, s, found)
}

// adoptHeld takes over the newest running container of found as owner's run
// and removes the others. The caller holds the turn.
func (m *Manager) adoptHeld(ctx context.Context, s *slot, found []Instance) error {
	keep := -1
	for i, inst := range found {
		if inst.Running && (keep < 0 || inst.StartedAt.After(found[keep].StartedAt)) {
			keep = i
		}
	}
	var errs []error
	for i, inst := range found {
		if i == keep {
			continue
		}
		m.log.Info("removing a leftover container", "app", m.app, "owner", s.owner.String(), "container", inst.Name, "running", inst.Running)
		if err := m.rt.Destroy(ctx, inst.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove leftover container %q of %s: %w", inst.Name, s.owner, err))
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if keep >= 0 && (s.run == nil || s.run.ended()) {
		inst := found[keep]
		if m.closed {
			errs = append(errs, fmt.Errorf("re-attach the container of %s: %w", s.owner, ErrManagerClosed))
		} else {
			m.log.Info("re-attached a running container", "app", m.app, "owner", s.owner.String(), "container", inst.Name, "paused", inst.Paused)
			r := &run{id: inst.ID, name: inst.Name, done: make(chan struct{})}
			s.cls.inUse++
			m.beginRunLocked(s, r)
			if inst.Paused {
				s.paused, s.pausedAt = true, m.clock.Now()
				m.rearmLocked(s)
			}
		}
	}
	s.attached = true
	return errors.Join(errs...)
}

// beginRunLocked makes r owner's current run and watches it.
func (m *Manager) beginRunLocked(s *slot, r *run) {
	s.run = r
	s.paused = false
	s.lastActive = m.clock.Now()
	m.wg.Add(1)
	go m.watch(s, r)
	m.rearmLocked(s)
}

// watch waits for r's container to end and settles r.
func (m *Manager) watch(s *slot, r *run) {
	defer m.wg.Done()
	exit, waitErr := m.rt.Wait(m.ctx, r.id)
	m.mu.Lock()
	defer m.mu.Unlock()
	var result error
	switch {
	case r.destroyed:
		result = r.destroyReason
	case waitErr != nil:
		result = fmt.Errorf("lost track of the container of %s: %w", s.owner, waitErr)
	case r.cleanStop || exit.Code == 0:
	default:
		result = &ExitError{
			Code:      exit.Code,
			Signalled: r.signalled && exit.Code > 128,
			OOMKilled: exit.OOMKilled,
		}
	}
	r.result = result
	close(r.done)
	r.disarmKillLocked()
	s.cls.inUse--
	if s.run == r {
		s.paused = false
		m.disarmLocked(s)
	}
	m.log.Info("container ended", "app", m.app, "owner", s.owner.String(), "container", r.name,
		"code", exit.Code, "oom", exit.OOMKilled, "destroyed", r.destroyed, "clean_stop", r.cleanStop, "result", errText(result))
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Start starts owner's container. It returns once the container's process
// runs, not once a port listens (poll Dial for that). It fails with
// ErrAlreadyRunning if the container runs, with ErrNoInstance when the
// class runs MaxInstances containers, with ErrTooManyStarts when the start
// rate is exceeded, and with the runtime's error otherwise; a failed Start
// is what Monitor then reports.
func (m *Manager) Start(ctx context.Context, owner Owner, opts StartOptions) (Instance, error) {
	s, err := m.slotFor(owner)
	if err != nil {
		return Instance{}, err
	}
	spec, err := m.spec(owner, s.cls, opts)
	if err != nil {
		return Instance{}, fmt.Errorf("start container of %s: %w", owner, err)
	}
	release, err := m.turn(ctx, s)
	if err != nil {
		return Instance{}, err
	}
	defer release()
	if err := m.attachHeld(ctx, s); err != nil {
		return Instance{}, fmt.Errorf("start container of %s: %w", owner, err)
	}

	m.mu.Lock()
	if err := m.admitLocked(s); err != nil {
		err = fmt.Errorf("start container of %s: %w", owner, err)
		if !errors.Is(err, ErrAlreadyRunning) {
			m.failRunLocked(s, err)
		}
		m.mu.Unlock()
		return Instance{}, err
	}
	stale := m.takeStaleLocked(s)
	m.mu.Unlock()

	spec.Egress = m.egressOf(s)
	inst, err := m.startNamed(ctx, owner, spec, stale)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil && m.closed {
		// Shutdown swept before this container existed.
		m.mu.Unlock()
		m.rt.Destroy(context.WithoutCancel(ctx), inst.ID) //nolint:errcheck // best effort, and the start fails anyway
		m.mu.Lock()
		err = ErrManagerClosed
	}
	if err != nil {
		s.cls.inUse--
		err = fmt.Errorf("start container of %s: %w", owner, err)
		m.failRunLocked(s, err)
		return Instance{}, err
	}
	m.beginRunLocked(s, &run{id: inst.ID, name: inst.Name, started: m.clock.Now(), done: make(chan struct{})})
	m.log.Info("container started", "app", m.app, "owner", owner.String(), "container", inst.Name)
	return inst, nil
}

// failRunLocked records a failed start as s's latest run, so that Monitor
// reports it, keeping the previous container (if not removed) for removal.
func (m *Manager) failRunLocked(s *slot, err error) {
	if r := s.run; r != nil && !r.removed {
		s.stale = append(s.stale, r.id)
	}
	failed := &run{done: make(chan struct{}), result: err, removed: true}
	close(failed.done)
	s.run = failed
}

// takeStaleLocked returns the ids of s's stopped containers that are still
// in the runtime and forgets them: the caller removes them.
func (m *Manager) takeStaleLocked(s *slot) []string {
	stale := s.stale
	s.stale = nil
	if r := s.run; r != nil && !r.removed && r.ended() {
		stale = append(stale, r.id)
		r.removed = true
	}
	return stale
}

// admitLocked reserves an instance of s's class for a start.
func (m *Manager) admitLocked(s *slot) error {
	c := s.cls
	switch {
	case m.closed:
		return ErrManagerClosed
	case s.run != nil && !s.run.ended():
		return ErrAlreadyRunning
	case c.max >= 0 && c.inUse >= c.max:
		m.log.Warn("refused a container start: max_instances reached", "app", m.app, "owner", s.owner.String(), "max_instances", c.max)
		return fmt.Errorf("%w: class %s runs its max_instances (%d)", ErrNoInstance, c.name, c.max)
	case !c.limiter.AllowN(m.clock.Now(), 1):
		m.log.Warn("refused a container start: start rate exceeded", "app", m.app, "owner", s.owner.String(), "per_second", float64(c.limiter.Limit()))
		return fmt.Errorf("%w: class %s allows %g starts per second", ErrTooManyStarts, c.name, float64(c.limiter.Limit()))
	}
	c.inUse++
	return nil
}

// spec builds the runtime spec of owner's container.
func (m *Manager) spec(owner Owner, c *class, opts StartOptions) (Spec, error) {
	if err := checkEnv(opts.Env); err != nil {
		return Spec{}, err
	}
	if err := checkLabels(opts.Labels, true); err != nil {
		return Spec{}, err
	}
	env := map[string]string{
		// The placeholders workerd sets locally; production sets real ones.
		"CLOUDFLARE_COUNTRY_A2":        "XX",
		"CLOUDFLARE_LOCATION":          "loc01",
		"CLOUDFLARE_REGION":            "REGN",
		"CLOUDFLARE_DEPLOYMENT_ID":     m.app + "-" + owner.Class,
		"CLOUDFLARE_APPLICATION_ID":    m.app + "-" + owner.Class,
		"CLOUDFLARE_DURABLE_OBJECT_ID": owner.Object,
	}
	maps.Copy(env, c.cfg.Env)
	maps.Copy(env, opts.Env)
	labels := maps.Clone(m.labels)
	if labels == nil {
		labels = make(map[string]string)
	}
	maps.Copy(labels, opts.Labels)
	maps.Copy(labels, m.ownerLabels(owner))
	spec := Spec{
		Image:    c.cfg.Image,
		Env:      env,
		Labels:   labels,
		Limits:   c.cfg.Limits,
		Internet: opts.EnableInternet,
	}
	if len(opts.Entrypoint) > 0 {
		spec.Cmd = slices.Clone(opts.Entrypoint)
	}
	return spec, nil
}

func (m *Manager) ownerLabels(owner Owner) map[string]string {
	return map[string]string{LabelApp: m.app, LabelClass: owner.Class, LabelObject: owner.Object}
}

var nameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// ContainerName is the name of owner's container in app:
// berth-<app>-<class>-<first 12 characters of the object id>, with
// characters a container name cannot hold replaced by '-'. It is
// deterministic so that a restarted berth finds the container; should the
// name be taken by another owner's container, the full object id is used.
func ContainerName(app string, owner Owner) string {
	return containerName(app, owner, 12)
}

func containerName(app string, owner Owner, objectChars int) string {
	object := nameUnsafe.ReplaceAllString(owner.Object, "-")
	if objectChars > 0 && len(object) > objectChars {
		object = object[:objectChars]
	}
	return "berth-" + nameUnsafe.ReplaceAllString(app, "-") + "-" + nameUnsafe.ReplaceAllString(owner.Class, "-") + "-" + object
}

// startNamed removes stale (the owner's previous, stopped containers) and
// starts spec under the owner's name, dealing with a name already in use.
func (m *Manager) startNamed(ctx context.Context, owner Owner, spec Spec, stale []string) (Instance, error) {
	for _, id := range stale {
		if err := m.rt.Destroy(ctx, id); err != nil {
			return Instance{}, fmt.Errorf("remove the previous container: %w", err)
		}
	}
	spec.Name = ContainerName(m.app, owner)
	inst, err := m.rt.Start(ctx, spec)
	if !errors.Is(err, ErrAlreadyExists) {
		return inst, err
	}
	// The name is taken: by a leftover of this owner that nobody tracked,
	// or (rarely) by another owner whose id shares the prefix.
	all, lerr := m.rt.List(ctx, nil)
	if lerr != nil {
		return Instance{}, errors.Join(err, lerr)
	}
	mine := m.ownerLabels(owner)
	for _, other := range all {
		if other.Name != spec.Name {
			continue
		}
		if maps.Equal(pick(other.Labels, LabelApp, LabelClass, LabelObject), mine) {
			m.log.Info("removing an untracked container of the owner", "app", m.app, "owner", owner.String(), "container", other.Name)
			if err := m.rt.Destroy(ctx, other.ID); err != nil {
				return Instance{}, fmt.Errorf("remove container %q that holds the name: %w", other.Name, err)
			}
			return m.rt.Start(ctx, spec)
		}
	}
	spec.Name = containerName(m.app, owner, 0)
	return m.rt.Start(ctx, spec)
}

func pick(labels map[string]string, keys ...string) map[string]string {
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if v, ok := labels[k]; ok {
			out[k] = v
		}
	}
	return out
}

// Monitor waits (after the owner's calls already in line) until owner's
// current or latest container has ended and reports how: nil for exit code
// 0, a stop the Manager made to sleep or shut down, or Destroy without a
// reason; the reason given to Destroy; an *ExitError for any other exit;
// the error of a failed Start. With no container ever started it fails with
// ErrNotRunning.
func (m *Manager) Monitor(ctx context.Context, owner Owner) error {
	s, err := m.slotFor(owner)
	if err != nil {
		return err
	}
	release, err := m.turn(ctx, s)
	if err != nil {
		return err
	}
	err = m.attachHeld(ctx, s)
	m.mu.Lock()
	r := s.run
	m.mu.Unlock()
	release()
	if err != nil {
		return fmt.Errorf("monitor container of %s: %w", owner, err)
	}
	if r == nil {
		return fmt.Errorf("monitor container of %s: %w", owner, ErrNotRunning)
	}
	select {
	case <-r.done:
		return r.result
	case <-ctx.Done():
		return fmt.Errorf("monitor container of %s: %w", owner, ctx.Err())
	}
}

// Destroy kills and removes owner's container and returns once it is gone.
// reason becomes what Monitor reports (nil: a clean end). Destroying an
// owner without a running container removes any stopped one and is
// otherwise a no-op.
func (m *Manager) Destroy(ctx context.Context, owner Owner, reason error) error {
	s, release, err := m.takeTurn(ctx, owner)
	if err != nil {
		return err
	}
	defer release()
	if err := m.attachHeld(ctx, s); err != nil {
		return fmt.Errorf("destroy container of %s: %w", owner, err)
	}
	m.mu.Lock()
	stale := m.takeStaleLocked(s)
	r := s.run
	live := r != nil && !r.removed
	if live {
		r.destroyed, r.destroyReason = true, reason
		r.disarmKillLocked()
	}
	m.mu.Unlock()
	for _, id := range stale {
		if err := m.rt.Destroy(ctx, id); err != nil {
			return fmt.Errorf("destroy container of %s: %w", owner, err)
		}
	}
	if !live {
		return nil
	}
	if err := m.rt.Destroy(ctx, r.id); err != nil {
		return fmt.Errorf("destroy container of %s: %w", owner, err)
	}
	m.mu.Lock()
	r.removed = true
	m.mu.Unlock()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("destroy container of %s: %w", owner, ctx.Err())
	}
}

// Signal sends signal signo (1-64) to the main process of owner's
// container, waking it first if it sleeps paused.
//
// SIGTERM also arms a kill, as `docker stop` does: if the same run of the
// container still runs once the stop grace (ManagerConfig.StopGrace) has
// passed on the Manager's clock, the Manager sends it SIGKILL, and Monitor
// then reports an *ExitError with code 137 ("runtime signalled the
// container to exit: 137"). This is how a stop that user code makes with
// SIGTERM (sleepAfter in @cloudflare/containers) ends a process that
// ignores SIGTERM. A SIGTERM while a kill is armed keeps the first
// deadline; the kill is cancelled when the container ends, is destroyed or
// the Manager shuts down, and never reaches a later run. Other signals
// arm nothing.
func (m *Manager) Signal(ctx context.Context, owner Owner, signo int) error {
	if signo < 1 || signo > 64 {
		return fmt.Errorf("signal container of %s: %w: signal %d is not in 1-64", owner, ErrInvalid, signo)
	}
	s, release, err := m.takeTurn(ctx, owner)
	if err != nil {
		return err
	}
	defer release()
	r, err := m.runningRun(s, "signal")
	if err != nil {
		return err
	}
	if err := m.unpauseHeld(ctx, s, r); err != nil {
		return err
	}
	m.mu.Lock()
	r.signalled = true
	m.mu.Unlock()
	if err := m.rt.Signal(ctx, r.id, syscall.Signal(signo)); err != nil {
		return fmt.Errorf("signal container of %s: %w", owner, err)
	}
	if syscall.Signal(signo) == syscall.SIGTERM {
		m.mu.Lock()
		m.armKillLocked(s, r)
		m.mu.Unlock()
	}
	return nil
}

// armKillLocked arms the SIGKILL of r at the end of the stop grace unless
// one is armed or r can no longer be killed. The caller holds m.mu.
func (m *Manager) armKillLocked(s *slot, r *run) {
	if r.killStop != nil || r.ended() || r.destroyed || m.closed {
		return
	}
	r.killStop = m.clock.AfterFunc(m.grace, func() { m.killAfterGrace(s, r) })
}

// killAfterGrace sends SIGKILL to r, in the owner's turn, if it still runs
// once the grace after a SIGTERM has passed.
func (m *Manager) killAfterGrace(s *slot, r *run) {
	m.mu.Lock()
	if r.killStop == nil || m.closed {
		// Disarmed after the timer had already fired.
		m.mu.Unlock()
		return
	}
	r.killStop = nil
	m.wg.Add(1) // before Shutdown waits: it sets closed first
	m.mu.Unlock()
	defer m.wg.Done()

	release, err := m.turn(m.ctx, s)
	if err != nil {
		return
	}
	defer release()
	if err := m.killHeld(s, r); err != nil {
		m.log.Warn("could not kill a container that outlived its stop grace", "app", m.app, "owner", s.owner.String(),
			"container", r.name, "grace", m.grace.String(), "err", err.Error())
	}
}

// killHeld is killAfterGrace's work in the owner's turn.
func (m *Manager) killHeld(s *slot, r *run) error {
	m.mu.Lock()
	gone := s.run != r || r.ended() || r.destroyed || m.closed
	m.mu.Unlock()
	if gone {
		return nil
	}
	// A paused container could not act on the kill until woken.
	if err := m.unpauseHeld(m.ctx, s, r); err != nil {
		return fmt.Errorf("kill container of %s after grace: %w", s.owner, err)
	}
	if err := m.rt.Signal(m.ctx, r.id, syscall.SIGKILL); err != nil {
		if errors.Is(err, ErrNotRunning) {
			return nil // it ended by itself meanwhile
		}
		return fmt.Errorf("kill container of %s after grace: %w", s.owner, err)
	}
	m.log.Info("killed a container that ignored SIGTERM for its stop grace", "app", m.app, "owner", s.owner.String(),
		"container", r.name, "grace", m.grace.String())
	return nil
}

// runningRun returns s's run if it runs, else an error wrapping
// ErrNotRunning naming op.
func (m *Manager) runningRun(s *slot, op string) (*run, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := s.run
	if r == nil || r.ended() {
		return nil, fmt.Errorf("%s container of %s: %w", op, s.owner, ErrNotRunning)
	}
	return r, nil
}

// Dial connects to port (0: the class's DefaultPort) inside owner's
// container, waking it if it sleeps paused. The connection holds the owner
// busy (see Hold) until it is closed. A port nothing listens on gives an
// error wrapping ErrPortNotListening, whose text contains "the container is
// not listening"; a container that does not run gives ErrNotRunning.
func (m *Manager) Dial(ctx context.Context, owner Owner, port int) (net.Conn, error) {
	return m.dial(ctx, owner, port, true)
}

// DialIdle is Dial for a pool of keep-alive connections: the connection
// does not hold the owner busy, so that an idle one lets the container
// sleep. Each use of it is to be bracketed by Use.
func (m *Manager) DialIdle(ctx context.Context, owner Owner, port int) (net.Conn, error) {
	return m.dial(ctx, owner, port, false)
}

// Use marks owner busy, as Hold does, for one use of a connection DialIdle
// made, and wakes the container if it sleeps paused. A container that does
// not run gives ErrNotRunning.
func (m *Manager) Use(ctx context.Context, owner Owner) (release func(), err error) {
	s, err := m.slotFor(owner)
	if err != nil {
		return nil, err
	}
	r, err := m.runningRun(s, "use")
	if err != nil {
		return nil, err
	}
	done := m.holdTraffic(owner, s)
	if err := m.wake(ctx, s, r); err != nil {
		done()
		return nil, err
	}
	return done, nil
}

// holdTraffic is Hold for a connection or request into s's container.
func (m *Manager) holdTraffic(owner Owner, s *slot) (release func()) {
	done := m.Hold(owner)
	m.mu.Lock()
	s.traffic++
	s.lastTraffic = m.clock.Now()
	m.mu.Unlock()
	return sync.OnceFunc(func() {
		m.mu.Lock()
		s.traffic--
		s.lastTraffic = m.clock.Now()
		m.mu.Unlock()
		done()
	})
}

func (m *Manager) dial(ctx context.Context, owner Owner, port int, hold bool) (net.Conn, error) {
	s, err := m.slotFor(owner)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = s.cls.cfg.DefaultPort
		if port == 0 {
			return nil, fmt.Errorf("dial container of %s: %w: no port given and class %s has no default port", owner, ErrInvalid, owner.Class)
		}
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("dial container of %s: %w: port %d is not in 1-65535", owner, ErrInvalid, port)
	}
	r, err := m.runningRun(s, "dial")
	if err != nil {
		return nil, err
	}
	var done func()
	if hold {
		done = m.holdTraffic(owner, s)
	} else {
		done = m.Hold(owner)
	}
	if err := m.wake(ctx, s, r); err != nil {
		done()
		return nil, err
	}
	conn, err := m.dialBooting(ctx, r, port)
	if err != nil {
		done()
		return nil, fmt.Errorf("dial container of %s: %w", owner, err)
	}
	if !hold {
		done()
		return conn, nil
	}
	return &heldConn{Conn: conn, release: sync.OnceFunc(done)}, nil
}

// dialBooting dials port of r's container, retrying a refused port while
// the container is within BootWait of its start.
func (m *Manager) dialBooting(ctx context.Context, r *run, port int) (net.Conn, error) {
	for {
		conn, err := m.rt.Dial(ctx, r.id, port)
		if err == nil || !errors.Is(err, ErrPortNotListening) || r.started.IsZero() ||
			m.clock.Now().Sub(r.started) >= m.bootWait {
			return conn, err
		}
		tick := make(chan struct{})
		stop := m.clock.AfterFunc(BootPoll, func() { close(tick) })
		select {
		case <-tick:
		case <-r.done:
			stop()
			return nil, err
		case <-ctx.Done():
			stop()
			return nil, err
		}
	}
}

// heldConn keeps its owner busy until closed.
type heldConn struct {
	net.Conn
	release func()
}

func (c *heldConn) Close() error {
	defer c.release()
	return c.Conn.Close()
}

// Exec starts a process in owner's running container, waking it if it
// sleeps paused; it counts as activity. The process does not hold the owner
// busy: a long-running one should be covered by Hold.
func (m *Manager) Exec(ctx context.Context, owner Owner, spec ExecSpec) (Process, error) {
	s, err := m.slotFor(owner)
	if err != nil {
		return nil, err
	}
	r, err := m.runningRun(s, "exec in")
	if err != nil {
		return nil, err
	}
	if err := m.wake(ctx, s, r); err != nil {
		return nil, err
	}
	m.Activity(owner)
	p, err := m.rt.Exec(ctx, r.id, spec)
	if err != nil {
		return nil, fmt.Errorf("exec in container of %s: %w", owner, err)
	}
	return p, nil
}

// Inspect returns the runtime's view of owner's current or latest container;
// ErrNotFound when there is none.
func (m *Manager) Inspect(ctx context.Context, owner Owner) (Instance, error) {
	s, err := m.slotFor(owner)
	if err != nil {
		return Instance{}, err
	}
	m.mu.Lock()
	r := s.run
	m.mu.Unlock()
	if r == nil || r.id == "" || r.removed {
		return Instance{}, fmt.Errorf("inspect container of %s: %w", owner, ErrNotFound)
	}
	inst, err := m.rt.Inspect(ctx, r.id)
	if err != nil {
		return Instance{}, fmt.Errorf("inspect container of %s: %w", owner, err)
	}
	return inst, nil
}

// Activity marks owner as active now, which pushes its inactivity timeout
// back. It does not wake a paused container.
func (m *Manager) Activity(owner Owner) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.slots[owner]; s != nil {
		s.lastActive = m.clock.Now()
	}
}

// Hold marks owner busy (a request or an open stream or WebSocket) until
// release is called; a busy owner's container is never put to sleep.
// release may be called more than once; only the first call counts.
func (m *Manager) Hold(owner Owner) (release func()) {
	s, err := m.slotFor(owner)
	if err != nil {
		return func() {}
	}
	m.mu.Lock()
	s.holds++
	s.lastActive = m.clock.Now()
	m.disarmLocked(s)
	m.mu.Unlock()
	return sync.OnceFunc(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		s.holds--
		s.lastActive = m.clock.Now()
		m.rearmLocked(s)
	})
}

// Traffic reports whether something talks to owner's container (a Use not
// released, a Dial'd connection not closed) and otherwise how long ago the
// last of it ended, for callers that decide on sleep by container traffic
// alone, as the Container class's sleepAfter does; a Hold that is not
// traffic (a request to the object itself) does not count. An owner the
// Manager has not seen has been quiet since the Manager started.
func (m *Manager) Traffic(owner Owner) (busy bool, idle time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slots[owner]
	if s == nil {
		return false, m.clock.Now().Sub(m.started)
	}
	if s.traffic > 0 {
		return true, 0
	}
	return false, m.clock.Now().Sub(s.lastTraffic)
}

// SetInactivityTimeout sets how long owner's container may stay idle (no
// Hold, Dial or Activity) before it sleeps, counted from now; 0 turns the
// timeout off. It lasts for the owner's later containers too.
func (m *Manager) SetInactivityTimeout(owner Owner, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("set inactivity timeout of %s: %w: %s is negative", owner, ErrInvalid, d)
	}
	s, err := m.slotFor(owner)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s.inactivity = d
	s.lastActive = m.clock.Now()
	m.disarmLocked(s)
	m.rearmLocked(s)
	return nil
}

// disarmLocked cancels s's timer; a callback already on its way sees the
// sequence number moved on and does nothing.
func (m *Manager) disarmLocked(s *slot) {
	if s.timerStop != nil {
		s.timerStop()
		s.timerStop = nil
	}
	s.timerSeq++
}

// sleepDueLocked returns when s's container should go to sleep (or, paused,
// be stopped), and false when no timer applies.
func (m *Manager) sleepDueLocked(s *slot) (time.Time, bool) {
	if m.closed || s.run == nil || s.run.ended() || s.holds > 0 {
		return time.Time{}, false
	}
	if s.paused {
		return s.pausedAt.Add(s.cls.cfg.DeepSleepAfter), true
	}
	if s.inactivity <= 0 {
		return time.Time{}, false
	}
	return s.lastActive.Add(s.inactivity), true
}

// rearmLocked arms s's timer if one applies and none is armed. Activity does
// not re-arm: the timer, when it fires early, arms itself for the rest.
func (m *Manager) rearmLocked(s *slot) {
	if s.timerStop != nil {
		return
	}
	due, ok := m.sleepDueLocked(s)
	if !ok {
		return
	}
	s.timerSeq++
	seq := s.timerSeq
	s.timerStop = m.clock.AfterFunc(max(due.Sub(m.clock.Now()), 0), func() { m.timerFired(s, seq) })
}

func (m *Manager) timerFired(s *slot, seq uint64) {
	m.mu.Lock()
	if seq != s.timerSeq {
		m.mu.Unlock()
		return
	}
	s.timerStop = nil
	due, ok := m.sleepDueLocked(s)
	if !ok || m.clock.Now().Before(due) {
		m.rearmLocked(s)
		m.mu.Unlock()
		return
	}
	r := s.run
	m.mu.Unlock()
	m.sleep(s, r)
}

// sleep pauses or stops r, owner's idle container, in the owner's turn.
func (m *Manager) sleep(s *slot, r *run) {
	release, err := m.turn(m.ctx, s)
	if err != nil {
		return
	}
	defer release()
	m.mu.Lock()
	due, ok := m.sleepDueLocked(s)
	if s.run != r || !ok || m.clock.Now().Before(due) {
		// Woken, held, destroyed or replaced while waiting for the turn.
		m.rearmLocked(s)
		m.mu.Unlock()
		return
	}
	if s.cls.cfg.Sleep == SleepPause && !s.paused {
		// Marked paused before the call, in the section that saw no holds:
		// a Dial that holds the owner from now on sees the mark and waits
		// for this turn to unpause, rather than dialing a frozen container.
		s.paused, s.pausedAt = true, m.clock.Now()
		m.mu.Unlock()
		err := m.pauser.Pause(m.ctx, r.id)
		m.mu.Lock()
		if err == nil {
			m.log.Info("paused an idle container", "app", m.app, "owner", s.owner.String(), "container", r.name)
			m.rearmLocked(s)
			m.mu.Unlock()
			return
		}
		s.paused = false
		m.log.Warn("could not pause an idle container; stopping it instead", "app", m.app, "owner", s.owner.String(), "container", r.name, "err", err.Error())
		if r.ended() {
			m.mu.Unlock()
			return
		}
	}
	r.cleanStop = true
	m.mu.Unlock()
	m.log.Info("stopping an idle container", "app", m.app, "owner", s.owner.String(), "container", r.name)
	if err := m.rt.Stop(m.ctx, r.id, m.grace); err != nil {
		m.log.Warn("could not stop an idle container", "app", m.app, "owner", s.owner.String(), "container", r.name, "err", err.Error())
		m.mu.Lock()
		if !r.ended() {
			r.cleanStop = false
		}
		m.mu.Unlock()
	}
}

// wake unpauses r if it sleeps paused, in the owner's turn.
func (m *Manager) wake(ctx context.Context, s *slot, r *run) error {
	m.mu.Lock()
	paused := s.paused
	m.mu.Unlock()
	if !paused {
		return nil
	}
	release, err := m.turn(ctx, s)
	if err != nil {
		return err
	}
	defer release()
	return m.unpauseHeld(ctx, s, r)
}

// unpauseHeld unpauses r if it is paused. The caller holds the turn.
func (m *Manager) unpauseHeld(ctx context.Context, s *slot, r *run) error {
	m.mu.Lock()
	paused := s.paused && s.run == r
	m.mu.Unlock()
	if !paused {
		return nil
	}
	if err := m.pauser.Unpause(ctx, r.id); err != nil {
		return fmt.Errorf("wake container of %s: %w", s.owner, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s.paused = false
	s.lastActive = m.clock.Now()
	m.disarmLocked(s)
	m.rearmLocked(s)
	m.log.Info("woke a paused container", "app", m.app, "owner", s.owner.String(), "container", r.name)
	return nil
}

// Recover runs at startup. For every container of this Manager's app in the
// runtime it re-attaches the running container of each owner that known
// reports as existing (and whose class is configured), and removes the
// rest: containers of owners that are gone and stopped leftovers. A nil
// known counts every owner as existing. It returns the owners it
// re-attached.
func (m *Manager) Recover(ctx context.Context, known func(Owner) bool) ([]Owner, error) {
	if known == nil {
		known = func(Owner) bool { return true }
	}
	found, err := m.rt.List(ctx, map[string]string{LabelApp: m.app, LabelClass: "", LabelObject: ""})
	if err != nil {
		return nil, fmt.Errorf("recover containers of app %q: %w", m.app, err)
	}
	byOwner := make(map[Owner][]Instance)
	for _, inst := range found {
		o := Owner{Class: inst.Labels[LabelClass], Object: inst.Labels[LabelObject]}
		byOwner[o] = append(byOwner[o], inst)
	}
	var attached []Owner
	var errs []error
	for _, o := range slices.SortedFunc(maps.Keys(byOwner), func(a, b Owner) int { return strings.Compare(a.String(), b.String()) }) {
		insts := byOwner[o]
		m.mu.Lock()
		_, configured := m.classes[o.Class]
		m.mu.Unlock()
		if !configured || o.Object == "" || !known(o) {
			for _, inst := range insts {
				m.log.Info("removing the container of an owner that no longer exists", "app", m.app, "owner", o.String(), "container", inst.Name)
				if err := m.rt.Destroy(ctx, inst.ID); err != nil {
					errs = append(errs, fmt.Errorf("remove container %q of %s: %w", inst.Name, o, err))
				}
			}
			continue
		}
		s, err := m.slotFor(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		release, err := m.turn(ctx, s)
		if err != nil {
			return attached, errors.Join(append(errs, err)...)
		}
		m.mu.Lock()
		already := s.attached
		m.mu.Unlock()
		if !already {
			errs = append(errs, m.adoptHeld(ctx, s, insts))
		}
		release()
		if m.Running(o) {
			attached = append(attached, o)
		}
	}
	return attached, errors.Join(errs...)
}

// Shutdown removes every container this Manager started or re-attached,
// running or stopped, and refuses later starts; Monitor reports the
// removed ones as ended cleanly. It is what `berth dev` does on exit.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	var ids []string
	for _, s := range m.slots {
		m.disarmLocked(s)
		if s.run != nil {
			s.run.disarmKillLocked()
		}
		ids = append(ids, m.takeStaleLocked(s)...)
		r := s.run
		if r == nil || r.removed {
			continue
		}
		if !r.ended() {
			r.destroyed, r.destroyReason = true, nil
		}
		r.removed = true
		ids = append(ids, r.id)
	}
	m.mu.Unlock()

	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			if err := m.rt.Destroy(ctx, id); err != nil {
				errs[i] = fmt.Errorf("remove container %s: %w", id, err)
			}
		})
	}
	wg.Wait()
	m.cancel()
	watchers := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(watchers)
	}()
	select {
	case <-watchers:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("shut down container manager of app %q: %w", m.app, ctx.Err()))
	}
	return errors.Join(errs...)
}
