// Package actor is the engine-neutral side of Durable Objects: ids and
// namespaces, the Host that keeps exactly one live instance per object,
// activates it on demand and evicts it when idle, the alarm scheduler, and
// the check of Durable Object bindings against the config.
//
// It knows nothing of JavaScript. The JS binding (package worker)
// implements Object and a Factory, and calls Host.Get for every event it
// delivers (stub.fetch, RPC); the host itself originates only alarms and
// lifecycle calls. Input and output gates, blockConcurrencyWhile and the
// per-event storage transaction are the binding's business: the host lets
// events of one object overlap, as Cloudflare does while an event awaits
// I/O.
package actor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/storage"
)

// DefaultIdleTimeout is how long an object with no events in flight and no
// pending work stays live: Cloudflare evicts after 70-140 s.
const DefaultIdleTimeout = 70 * time.Second

// Clock is the time source; tests inject a manual one so they do not sleep.
type Clock = clock.Clock

// Object is one activation of a Durable Object: what a Factory built (the
// JS instance of the user's class and its event loop). The interface holds
// only what the host itself calls. Fetch and RPC carry engine values
// (JS Requests, structured clones), so the binding delivers them on its
// concrete type, reached through Handle.Object, while it holds the Handle.
//
// The host calls Alarm and Close from goroutines of its own, never while
// holding its locks, so they may call back into the host (State methods,
// Host.Get of other objects).
type Object interface {
	// Alarm runs the alarm handler (alarm(info) in JS) and returns when it
	// has settled: nil if it completed, an error if it threw (the host
	// then retries with backoff). The host delivers at most one alarm at a
	// time per object, while other events may be in flight; it counts as an
	// event in flight, so the object is not evicted while it runs. There is
	// no time limit: ctx is cancelled only when the host closes.
	Alarm(ctx context.Context, info AlarmInfo) error
	// Close ends the activation: the host evicts the object (idle), resets
	// it (State.Abort) or closes. It is called exactly once per activation.
	// After eviction no events are in flight. After Abort, or when Close
	// of the host gave up waiting, events may still be in flight: Close
	// must make them fail soon, since the next activation of the same id
	// waits until all have ended (exactly one live instance). The storage
	// DB stays usable until Close returns; the host releases it after.
	// Storage is never deleted.
	Close(ctx context.Context) error
}

// Factory creates the activation of an object: it runs the constructor.
// The host calls it at most once at a time per id, on the goroutine of the
// first Host.Get, with a context cancelled when the host closes (not the
// caller's: waiters share the outcome). An error fails every Get waiting
// for this activation; the next Get tries again. A Factory must not Get its
// own id: that waits for itself.
type Factory func(ctx context.Context, state *State) (Object, error)

// AlarmInfo is the argument of the alarm handler.
type AlarmInfo struct {
	// RetryCount is how many times this alarm has been delivered and
	// failed; IsRetry is RetryCount > 0.
	RetryCount int
	IsRetry    bool
	// ScheduledTime is the time the alarm was set for.
	ScheduledTime time.Time
}

// Options configure a Host.
type Options struct {
	// Store holds the objects' databases; required. The host does not
	// close it, and must be closed before it.
	Store *storage.Store
	// Factory builds activations; required.
	Factory Factory
	// Namespaces are the Durable Object classes the host serves; no two
	// may share a class or an identity. Alarms are routed by the identity
	// (the storage namespace); alarms of other namespaces found in the
	// store are left alone (logged).
	Namespaces []*Namespace
	// IdleTimeout is how long an object stays live without events in
	// flight and without pending work; default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// AlarmRetries and AlarmBackoff: a failing alarm handler is retried up
	// to AlarmRetries times (default 6), the n-th retry AlarmBackoff·2^(n-1)
	// after the failure (default 2 s), as on Cloudflare.
	AlarmRetries int
	AlarmBackoff time.Duration
	// Clock defaults to the real clock.
	Clock Clock
	// Logger receives alarm failures; default slog.Default().
	Logger *slog.Logger
}

// Host keeps the live objects of a set of namespaces: exactly one
// activation per id, created on demand, evicted when idle, and delivers
// their alarms. Its methods are safe for concurrent use.
type Host struct {
	store        *storage.Store
	factory      Factory
	namespaces   map[string]*Namespace // by identity (storage namespace)
	byClass      map[string]*Namespace
	idle         time.Duration
	alarmRetries int
	alarmBackoff time.Duration
	clock        Clock
	log          *slog.Logger

	// ctx is cancelled by Close: it bounds constructors and alarm handlers.
	ctx    context.Context
	cancel context.CancelFunc
	// work counts goroutines the host started (alarm deliveries, closes).
	work sync.WaitGroup

	mu     sync.Mutex
	closed bool
	live   map[storage.ObjectKey]*activation
	alarms map[storage.ObjectKey]*alarmEntry
}

// New starts a host: it reads the store's alarm index and arms every
// pending alarm, so alarms set before a restart fire (at once if overdue).
func New(opts Options) (*Host, error) {
	if opts.Store == nil || opts.Factory == nil {
		return nil, fmt.Errorf("actor host: Store and Factory are required: %w", ErrInvalid)
	}
	h := &Host{
		store:        opts.Store,
		factory:      opts.Factory,
		namespaces:   map[string]*Namespace{},
		byClass:      map[string]*Namespace{},
		idle:         opts.IdleTimeout,
		alarmRetries: opts.AlarmRetries,
		alarmBackoff: opts.AlarmBackoff,
		clock:        opts.Clock,
		log:          opts.Logger,
		live:         map[storage.ObjectKey]*activation{},
		alarms:       map[storage.ObjectKey]*alarmEntry{},
	}
	for _, ns := range opts.Namespaces {
		if other, ok := h.byClass[ns.class]; ok && other != ns {
			return nil, fmt.Errorf("actor host: namespace %q given twice: %w", ns.class, ErrInvalid)
		}
		if other, ok := h.namespaces[ns.identity]; ok && other != ns {
			return nil, fmt.Errorf("actor host: classes %q and %q share the identity %q: %w", other.class, ns.class, ns.identity, ErrInvalid)
		}
		h.byClass[ns.class] = ns
		h.namespaces[ns.identity] = ns
	}
	if h.idle <= 0 {
		h.idle = DefaultIdleTimeout
	}
	if h.alarmRetries <= 0 {
		h.alarmRetries = 6
	}
	if h.alarmBackoff <= 0 {
		h.alarmBackoff = 2 * time.Second
	}
	if h.clock == nil {
		h.clock = clock.Real{}
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	pending, err := h.store.Alarms(time.UnixMilli(1 << 53))
	if err != nil {
		h.cancel()
		return nil, fmt.Errorf("actor host: %w", err)
	}
	h.mu.Lock()
	for _, a := range pending {
		h.lowerAlarmLocked(a.Key, a.At)
	}
	h.mu.Unlock()
	return h, nil
}

// activation is one live instance. Fields below mu are guarded by Host.mu.
type activation struct {
	host  *Host
	id    ID
	key   storage.ObjectKey
	ready chan struct{} // closed once obj (or err) is set
	obj   Object
	state *State
	err   error

	inflight  int    // Handles not released
	holds     int    // pending work (State.KeepAlive)
	idleEpoch uint64 // bumped whenever the object stops or starts being idle
	stopIdle  func() bool
	dead      bool          // evicted, aborted or closing: no new Handles
	drained   chan struct{} // closed when dead and inflight is 0
	done      chan struct{} // closed when Close has run and storage is released

	closeOnce sync.Once

	// Alarm handler bookkeeping (see State.GetAlarm).
	alarmRunning bool
	alarmTouched bool
}

// Handle is one event's hold on a live object: while any Handle is
// unreleased the object is not evicted. Release it exactly once, when the
// event has ended (for fetch: when the response body is done).
type Handle struct {
	a        *activation
	released atomic.Bool
}

// Object is the activation the event goes to; the binding type-asserts it
// to its own type.
func (hd *Handle) Object() Object { return hd.a.obj }

// State is the activation's state (ctx in JS).
func (hd *Handle) State() *State { return hd.a.state }

// Release ends the event. Later calls do nothing.
func (hd *Handle) Release() {
	if hd.released.Swap(true) {
		return
	}
	h := hd.a.host
	h.mu.Lock()
	hd.a.inflight--
	h.checkIdleLocked(hd.a)
	h.mu.Unlock()
}

// Get returns a Handle on the live object id, activating it (through the
// Factory) if it is not live. Concurrent Gets of an object that is not
// live activate it once. If the object is being evicted or reset, Get
// waits for that to finish and activates it anew. ctx bounds waiting for
// another caller's activation or for an eviction or reset to end; the
// caller that triggers activation runs the constructor on its own
// goroutine, which ctx does not interrupt. Errors: ErrInvalid for a zero id or a namespace the host does not
// serve, ErrClosed after Close, the Factory's error (wrapped).
func (h *Host) Get(ctx context.Context, id ID) (*Handle, error) {
	if id.IsZero() {
		return nil, fmt.Errorf("get durable object: zero id: %w", ErrInvalid)
	}
	if h.namespaces[id.ns.identity] != id.ns {
		return nil, fmt.Errorf("get durable object %s: namespace %q is not served by this host: %w", id, id.ns.class, ErrInvalid)
	}
	key := id.Key()
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, fmt.Errorf("get durable object %s: %w", key, ErrClosed)
		}
		a := h.live[key]
		if a == nil {
			a = &activation{host: h, id: id, key: key, ready: make(chan struct{}),
				drained: make(chan struct{}), done: make(chan struct{}), inflight: 1}
			h.live[key] = a
			h.mu.Unlock()
			if err := h.activate(a); err != nil {
				return nil, err
			}
			return &Handle{a: a}, nil
		}
		if a.dead {
			h.mu.Unlock()
			select {
			case <-a.done:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("get durable object %s: %w", key, ctx.Err())
			}
		}
		a.inflight++
		h.busyLocked(a)
		h.mu.Unlock()
		hd := &Handle{a: a}
		select {
		case <-a.ready:
		case <-ctx.Done():
			hd.Release()
			return nil, fmt.Errorf("get durable object %s: %w", key, ctx.Err())
		}
		if a.err != nil {
			hd.Release()
			return nil, a.err
		}
		return hd, nil
	}
}

// TryGet is Get for an object that is already live: it returns a Handle
// when id is live, activated without error and not being evicted or reset,
// and false otherwise. It never activates and never waits, so that a
// caller on the loop that runs the object's events can call it.
func (h *Host) TryGet(id ID) (*Handle, bool) {
	if id.IsZero() || h.namespaces[id.ns.identity] != id.ns {
		return nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.live[id.Key()]
	if h.closed || a == nil || a.dead {
		return nil, false
	}
	select {
	case <-a.ready:
	default:
		return nil, false
	}
	if a.err != nil {
		return nil, false
	}
	a.inflight++
	h.busyLocked(a)
	return &Handle{a: a}, true
}

// activate runs the constructor for a fresh activation whose first Handle
// the caller holds.
func (h *Host) activate(a *activation) error {
	db, err := h.store.Object(a.key)
	if err == nil {
		a.state = &State{a: a, ID: a.id, Storage: db}
		var obj Object
		obj, err = h.factory(h.ctx, a.state)
		if err != nil {
			_ = db.Close()
			err = fmt.Errorf("activate durable object %s: %w", a.key, err)
		}
		a.obj = obj
	} else {
		err = fmt.Errorf("activate durable object %s: %w", a.key, err)
	}
	if err == nil {
		close(a.ready)
		return nil
	}
	h.mu.Lock()
	a.err = err
	a.dead = true
	if h.live[a.key] == a {
		delete(h.live, a.key)
	}
	h.mu.Unlock()
	close(a.ready)
	close(a.done)
	return err
}

// busyLocked cancels a pending idle eviction.
func (h *Host) busyLocked(a *activation) {
	a.idleEpoch++
	if a.stopIdle != nil {
		a.stopIdle()
		a.stopIdle = nil
	}
}

// checkIdleLocked arms idle eviction when the object has become idle, and
// signals a dying object's drain.
func (h *Host) checkIdleLocked(a *activation) {
	if a.dead {
		if a.inflight == 0 {
			select {
			case <-a.drained:
			default:
				close(a.drained)
			}
		}
		return
	}
	if a.inflight > 0 || a.holds > 0 || a.err != nil {
		return
	}
	a.idleEpoch++
	epoch := a.idleEpoch
	if a.stopIdle != nil {
		a.stopIdle()
	}
	a.stopIdle = h.clock.AfterFunc(h.idle, func() { h.evictIfIdle(a, epoch) })
}

func (h *Host) evictIfIdle(a *activation, epoch uint64) {
	h.mu.Lock()
	if a.dead || a.idleEpoch != epoch || a.inflight > 0 || a.holds > 0 {
		h.mu.Unlock()
		return
	}
	a.stopIdle = nil
	h.killLocked(a)
	h.mu.Unlock()
	h.finish(a, false, context.Background())
}

// killLocked marks a dead: no new Handles; Gets wait for done.
func (h *Host) killLocked(a *activation) {
	a.dead = true
	if a.stopIdle != nil {
		a.stopIdle()
		a.stopIdle = nil
	}
	if a.inflight == 0 {
		close(a.drained)
	}
}

// finish closes a dead activation and releases its storage. closeFirst
// calls Close before waiting for the events in flight to end (abort);
// otherwise Close comes after them.
func (h *Host) finish(a *activation, closeFirst bool, ctx context.Context) {
	<-a.ready
	if a.err != nil {
		return // the constructor failed: activate cleaned up
	}
	if closeFirst {
		h.closeObject(ctx, a)
		<-a.drained
	} else {
		<-a.drained
		h.closeObject(ctx, a)
	}
	_ = a.state.Storage.Close()
	h.mu.Lock()
	if h.live[a.key] == a {
		delete(h.live, a.key)
	}
	h.mu.Unlock()
	close(a.done)
}

// closeObject calls the object's Close, once per activation.
func (h *Host) closeObject(ctx context.Context, a *activation) {
	a.closeOnce.Do(func() {
		if err := a.obj.Close(ctx); err != nil {
			h.log.Warn("close durable object", "object", a.key.String(), "err", err)
		}
	})
}

// Namespace returns the namespace of class, if the host serves it. The JS
// binding builds env.<BINDING> from it (idFromName, newUniqueId,
// idFromString), one per durable_objects binding, sharing it between
// bindings of the same class.
func (h *Host) Namespace(class string) (*Namespace, bool) {
	ns, ok := h.byClass[class]
	return ns, ok
}

// Live is the number of activations live now (including ones closing).
func (h *Host) Live() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.live)
}

// Close stops the host: Gets fail with ErrClosed, alarm timers stop, the
// contexts of constructors and alarm handlers are cancelled, and every
// object is closed once its events in flight have ended. If ctx ends
// first, the remaining objects are closed with events still in flight and
// Close returns ctx's error without waiting further. Storage stays; the
// alarms fire again when a new Host opens the store.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	for _, e := range h.alarms {
		e.disarmLocked()
	}
	var dying, closing []*activation
	for _, a := range h.live {
		if !a.dead {
			h.killLocked(a)
			dying = append(dying, a)
		} else {
			closing = append(closing, a) // evicted or aborted already
		}
	}
	h.mu.Unlock()
	h.cancel()

	all := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, a := range dying {
			wg.Go(func() { h.finish(a, false, context.WithoutCancel(ctx)) })
		}
		wg.Wait()
		for _, a := range closing {
			<-a.done
		}
		h.work.Wait()
		close(all)
	}()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		for _, a := range dying {
			select {
			case <-a.drained:
			case <-a.ready:
				if a.err == nil {
					// Events are stuck: close the object so they fail.
					go h.closeObject(context.WithoutCancel(ctx), a)
				}
			default:
			}
		}
		return fmt.Errorf("close actor host: %w", ctx.Err())
	}
}

// State is what an activation gets from the host: ctx in JS (ctx.id,
// ctx.storage, ctx.abort, ctx.waitUntil). It is valid until the
// activation's Close returns. Its methods are safe for concurrent use.
type State struct {
	a *activation
	// ID is the object's id (ctx.id).
	ID ID
	// Storage is the object's database (ctx.storage), shared with nobody
	// else while the activation lives. The binding owns its event
	// transactions (Begin/Commit). Set and delete the alarm through State,
	// not directly, so that the scheduler hears of it.
	Storage *storage.DB
}

// SetAlarm sets the object's alarm (storage.setAlarm) and arms the
// scheduler. The write is part of the open event transaction like any
// other; the scheduler checks the database when the timer fires, so an
// alarm written and then rolled back does not fire.
func (s *State) SetAlarm(t time.Time) error {
	if err := s.Storage.SetAlarm(t); err != nil {
		return err
	}
	h := s.a.host
	h.mu.Lock()
	if s.a.alarmRunning {
		s.a.alarmTouched = true
	}
	h.lowerAlarmLocked(s.a.key, t.Truncate(time.Millisecond))
	h.mu.Unlock()
	return nil
}

// DeleteAlarm deletes the object's alarm (storage.deleteAlarm).
func (s *State) DeleteAlarm() error {
	if err := s.Storage.DeleteAlarm(); err != nil {
		return err
	}
	s.AlarmChanged()
	return nil
}

// GetAlarm returns the alarm (storage.getAlarm). While the alarm handler
// runs it reports none unless SetAlarm or DeleteAlarm was called since the
// handler started, as on Cloudflare.
func (s *State) GetAlarm() (time.Time, bool, error) {
	h := s.a.host
	h.mu.Lock()
	hide := s.a.alarmRunning && !s.a.alarmTouched
	h.mu.Unlock()
	if hide {
		return time.Time{}, false, nil
	}
	return s.Storage.GetAlarm()
}

// AlarmChanged tells the scheduler that the alarm may have changed other
// than through SetAlarm: after Storage.DeleteAll with the alarm, and after
// Storage.Rollback (a rolled-back DeleteAlarm brings the alarm back).
func (s *State) AlarmChanged() {
	h := s.a.host
	h.mu.Lock()
	if s.a.alarmRunning {
		s.a.alarmTouched = true
	}
	h.mu.Unlock()
	at, ok, err := s.Storage.GetAlarm()
	if err != nil || !ok {
		return // nothing to arm; a stale timer finds no alarm and stops
	}
	h.mu.Lock()
	h.lowerAlarmLocked(s.a.key, at)
	h.mu.Unlock()
}

// Abort resets the object (ctx.abort()): it takes no new events, Close is
// called at once (it should fail the events in flight), and the next Get
// activates a new instance once those have ended. reason is logged.
// Abort returns without waiting; calling it again does nothing.
func (s *State) Abort(reason error) {
	h := s.a.host
	h.mu.Lock()
	if s.a.dead {
		h.mu.Unlock()
		return
	}
	h.killLocked(s.a)
	h.work.Add(1)
	h.mu.Unlock()
	h.log.Info("durable object aborted", "object", s.a.key.String(), "reason", reason)
	go func() {
		defer h.work.Done()
		h.finish(s.a, true, context.WithoutCancel(h.ctx))
	}()
}

// KeepAlive reports pending work that must keep the object live although
// no event is in flight (ctx.waitUntil promises, a container monitor, a
// blockConcurrencyWhile started from a callback). The object is not
// evicted until release is called; release is idempotent.
func (s *State) KeepAlive() (release func()) {
	h := s.a.host
	h.mu.Lock()
	s.a.holds++
	h.busyLocked(s.a)
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			s.a.holds--
			h.checkIdleLocked(s.a)
			h.mu.Unlock()
		})
	}
}
