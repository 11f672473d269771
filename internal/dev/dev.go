// Package dev is `berth dev`: it loads a project, bundles its Worker, serves
// it, and rebuilds when the sources change, keeping the last good version
// serving while a rebuild fails.
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/joho/godotenv"

	"github.com/berth-dev/berth/internal/actor"
	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/storage"
	"github.com/berth-dev/berth/internal/worker"
)

// Options are the settings of one `berth dev` run.
type Options struct {
	// Dir is the project directory; ConfigPath overrides the config file
	// found in it.
	Dir        string
	ConfigPath string
	// IP and Port override the config's dev section; Port -1 means "not set"
	// and 0 picks a free port.
	IP   string
	Port int
	// Vars override the config's vars and .dev.vars.
	Vars map[string]string
	// Environ is the process environment, consulted only when it holds
	// CLOUDFLARE_INCLUDE_PROCESS_ENV=true (as wrangler does).
	Environ []string
	Logger  *slog.Logger
	// Out receives the lines a user watches for ("Ready on …", rebuilds).
	Out io.Writer
	// Watch rebuilds on source changes.
	Watch bool
	// Ready, if set, is called with the served URL once requests are
	// accepted.
	Ready func(url string)
	// StateDir keeps Durable Object storage and the id secret across runs;
	// default <project>/.berth/state.
	StateDir string
	// ObjectIdleTimeout overrides how long an idle Durable Object stays
	// live (default actor.DefaultIdleTimeout).
	ObjectIdleTimeout time.Duration
	// DisableContainers skips the config's containers (wrangler's
	// --enable-containers=false); dev.enable_containers: false does too.
	DisableContainers bool
	// ContainerRuntime runs the containers; nil connects to Docker.
	ContainerRuntime container.Runtime
	// ContainerLabels go on every container and built image (tests add
	// container.LabelTest).
	ContainerLabels map[string]string
}

// Server is a running `berth dev`.
type Server struct {
	opts    Options
	cfg     *config.Config
	log     *slog.Logger
	current atomic.Pointer[version]
	// inputs are the files of the last good bundle, absolute.
	inputs []string

	// Durable Objects: nil host when the project has none. The host
	// outlives Worker versions; its Factory activates objects in the
	// current one, which exists once loaded is closed.
	store   *storage.Store
	host    *actor.Host
	classes []string
	loaded  chan struct{}

	// Containers of the Durable Objects (containers.go); nil when the app
	// has none or they are disabled.
	containers       *container.Manager
	containerClasses []string
	closeRuntime     func() error

	// goingAway ends when the server shuts down; the WebSocket requests'
	// contexts end with it, which closes their sockets with 1001. sockets
	// holds one channel per WebSocket request, closed when it ends.
	goingAway context.Context
	socketMu  sync.Mutex
	sockets   map[chan struct{}]struct{}
}

// socketCloseWait bounds how long shutdown waits for the WebSockets it
// closed to finish their close handshakes.
const socketCloseWait = time.Second

// Run serves the project until ctx ends.
func Run(ctx context.Context, opts Options) error {
	s, err := newServer(opts)
	if err != nil {
		return err
	}
	return s.run(ctx)
}

func newServer(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	path := opts.ConfigPath
	if path == "" {
		found, err := config.Find(opts.Dir)
		if err != nil {
			return nil, err
		}
		path = found
	} else if !filepath.IsAbs(path) {
		path = filepath.Join(opts.Dir, path)
	}
	// Absolute, so that paths derived from the config (build contexts, the
	// state dir) do not depend on the working directory.
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		opts.Logger.Warn(w, "config", path)
	}
	if cfg.Main == "" {
		return nil, &config.Error{Path: path, Key: "main", Msg: "required: the Worker's entry module"}
	}
	return &Server{opts: opts, cfg: cfg, log: opts.Logger, loaded: make(chan struct{})}, nil
}

func (s *Server) run(ctx context.Context) error {
	if err := s.openObjects(); err != nil {
		return err
	}
	defer s.closeObjects()
	if err := s.openContainers(ctx); err != nil {
		return err
	}
	// Registered after closeObjects, so it runs before the store closes
	// but after the objects were (they stop watching their containers).
	defer s.closeContainers()
	w, err := s.build(ctx)
	if err != nil {
		return err
	}
	s.current.Store(&version{worker: w})
	close(s.loaded)
	defer func() {
		s.closeHost()
		s.current.Load().retire()
	}()

	ln, err := net.Listen("tcp", s.listenAddr())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.serve),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	// Shutdown neither closes nor waits for hijacked connections: the
	// WebSockets are told to go away when it starts.
	goingAway, leave := context.WithCancel(context.Background())
	defer leave()
	s.goingAway = goingAway
	srv.RegisterOnShutdown(leave)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	// Watch before announcing Ready, so that no change made after Ready is
	// missed.
	if s.opts.Watch {
		w, err := s.startWatch()
		if err != nil {
			s.log.Error("watch sources: rebuilds are off", "err", err)
		} else {
			go w.run(ctx)
		}
	}
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(s.opts.Out, "Ready on %s\n", url)
	if s.opts.Ready != nil {
		s.opts.Ready(url)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		s.log.Warn("shutdown: requests still in flight were cut", "err", err)
	}
	s.waitSockets(socketCloseWait)
	return nil
}

func (s *Server) serve(rw http.ResponseWriter, r *http.Request) {
	v := s.acquire()
	defer v.release()
	if strings.Contains(strings.ToLower(r.Header.Get("Upgrade")), "websocket") {
		// The request's context is what tells the Worker to close the
		// socket with 1001 (going away) when berth dev stops.
		defer s.trackSocket()()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(s.goingAway, cancel)()
		r = r.WithContext(ctx)
	}
	v.worker.ServeHTTP(rw, r)
}

// trackSocket counts a WebSocket request as served until done is called.
func (s *Server) trackSocket() (done func()) {
	ch := make(chan struct{})
	s.socketMu.Lock()
	if s.sockets == nil {
		s.sockets = map[chan struct{}]struct{}{}
	}
	s.sockets[ch] = struct{}{}
	s.socketMu.Unlock()
	return func() {
		s.socketMu.Lock()
		delete(s.sockets, ch)
		s.socketMu.Unlock()
		close(ch)
	}
}

// waitSockets waits up to d for the WebSocket requests being served to end;
// a client that does not answer the close handshake is not waited for.
func (s *Server) waitSockets(d time.Duration) {
	s.socketMu.Lock()
	open := slices.Collect(maps.Keys(s.sockets))
	s.socketMu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for _, done := range open {
		select {
		case <-done:
		case <-timer.C:
			s.log.Warn("shutdown: WebSockets still closing were cut", "after", d)
			return
		}
	}
}

// acquire returns the current version, counted as in use until release.
func (s *Server) acquire() *version {
	for {
		v := s.current.Load()
		v.inflight.Add(1)
		if s.current.Load() == v {
			return v
		}
		v.release() // swapped meanwhile: use the new one
	}
}

// swap makes w the version new requests get; the old one closes once its
// last request is done.
func (s *Server) swap(w *worker.Worker) {
	old := s.current.Swap(&version{worker: w})
	// As on a deploy, objects of the old code are reset: their next
	// event activates them under the new version. Storage stays.
	old.worker.ResetObjects(errCodeUpdated)
	old.retire()
}

var errCodeUpdated = errors.New("durable object reset because its code was updated")

// openObjects opens the state directory and starts the object host when the
// config declares Durable Object classes. The storage of classes the
// migrations deleted is removed first.
func (s *Server) openObjects() error {
	s.classes = s.cfg.MigratedClasses()
	dir := s.opts.StateDir
	if dir == "" {
		dir = filepath.Join(s.cfg.Dir, ".berth", "state")
	}
	if len(s.classes) == 0 && len(s.cfg.DurableObjects.Bindings) == 0 {
		return s.deleteClassesOnly(dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	secret, err := actor.LoadSecret(dir, nil)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	var namespaces []*actor.Namespace
	for _, cls := range s.classes {
		// Ids and storage follow the class through renamed_classes.
		ns, err := actor.NewNamespaceWithIdentity(secret, cls, s.cfg.ClassIdentity(cls), nil)
		if err != nil {
			return &config.Error{Path: s.cfg.Path, Key: "migrations", Msg: fmt.Sprintf("class %q: %v", cls, err)}
		}
		namespaces = append(namespaces, ns)
	}
	store, err := storage.OpenStore(dir, storage.StoreOptions{})
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if err := s.deleteClasses(store); err != nil {
		store.Close()
		return err
	}
	host, err := actor.New(actor.Options{
		Store:       store,
		Factory:     s.activate,
		Namespaces:  namespaces,
		IdleTimeout: s.opts.ObjectIdleTimeout,
		Logger:      s.log,
	})
	if err != nil {
		store.Close()
		return err
	}
	s.store, s.host = store, host
	return nil
}

// deleteClasses removes the objects of the classes the migrations deleted,
// as a deploy with deleted_classes does on Cloudflare. It runs before the
// host opens, so no object of theirs is in use.
func (s *Server) deleteClasses(store *storage.Store) error {
	for _, identity := range s.cfg.DeletedClassIdentities() {
		removed, err := store.DeleteNamespace(identity)
		if err != nil {
			return fmt.Errorf("delete storage of deleted durable object class %q: %w", identity, err)
		}
		if removed {
			fmt.Fprintf(s.opts.Out, "Deleted the storage of Durable Object class %s (deleted_classes)\n", identity)
		}
	}
	return nil
}

// deleteClassesOnly applies deleted_classes when no class is left to serve:
// it opens the store only if it exists.
func (s *Server) deleteClassesOnly(dir string) error {
	if len(s.cfg.DeletedClassIdentities()) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "objects")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	store, err := storage.OpenStore(dir, storage.StoreOptions{})
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	err = s.deleteClasses(store)
	if cerr := store.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("state directory: %w", cerr)
	}
	return err
}

// activate is the object host's Factory: objects live in the current
// Worker version.
func (s *Server) activate(ctx context.Context, st *actor.State) (actor.Object, error) {
	select {
	case <-s.loaded:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	v := s.acquire()
	defer v.release()
	return v.worker.Activate(ctx, st)
}

// closeHost closes every live object (committing its storage) before the
// Worker versions go.
func (s *Server) closeHost() {
	if s.host == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.host.Close(ctx); err != nil {
		s.log.Warn("close durable objects", "err", err)
	}
}

func (s *Server) closeObjects() {
	s.closeHost()
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Warn("close durable object storage", "err", err)
		}
	}
}

// objects is the Durable Object part of a Worker's config.
func (s *Server) objects() *worker.Objects {
	if s.host == nil {
		return nil
	}
	bindings := map[string]string{}
	for _, b := range s.cfg.DurableObjects.Bindings {
		bindings[b.Name] = b.ClassName
	}
	objs := &worker.Objects{Host: s.host, Bindings: bindings, Classes: s.classes}
	if s.containers != nil {
		objs.Containers = s.containers
		objs.ContainerClasses = s.containerClasses
	}
	return objs
}

// version is one build of the Worker. Requests in flight on a replaced
// version finish on it; it is closed when the last one is done.
type version struct {
	worker   *worker.Worker
	inflight atomic.Int64
	retired  atomic.Bool
	closed   sync.Once
}

func (v *version) release() {
	if v.inflight.Add(-1) == 0 && v.retired.Load() {
		v.close()
	}
}

func (v *version) retire() {
	v.retired.Store(true)
	if v.inflight.Load() == 0 {
		v.close()
	}
}

func (v *version) close() { v.closed.Do(func() { v.worker.Close() }) }

func (s *Server) listenAddr() string {
	ip := s.opts.IP
	if ip == "" {
		ip = s.cfg.Dev.IP
	}
	if ip == "" {
		ip = "127.0.0.1"
	}
	port := s.opts.Port
	if port < 0 {
		port = s.cfg.Dev.Port
		if port == 0 {
			port = 8787
		}
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}

// MemoryLimit caps each Worker runtime's JavaScript heap, as Cloudflare caps
// an isolate's memory.
const MemoryLimit = 128 << 20

// build bundles the Worker and starts a new version of it.
func (s *Server) build(ctx context.Context) (*worker.Worker, error) {
	res, err := bundle.Build(ctx, bundle.Options{Entry: s.cfg.Main, Dir: s.cfg.Dir, Builtins: worker.Builtins})
	if err != nil {
		return nil, err
	}
	vars, err := s.vars()
	if err != nil {
		return nil, err
	}
	name := s.cfg.Name
	if name == "" {
		name = filepath.Base(s.cfg.Dir)
	}
	if s.host != nil && !slices.Equal(s.cfg.MigratedClasses(), s.classes) {
		fmt.Fprintf(s.opts.Out, "▲ The Durable Object classes changed (%s); restart berth dev to serve them.\n", strings.Join(s.cfg.MigratedClasses(), ", "))
	}
	w, err := worker.New(ctx, worker.Config{
		Name:    name,
		Script:  res.Code,
		Vars:    vars,
		Logger:  s.log,
		Objects: s.objects(),
		// limits.cpu_ms; 0 leaves the runtime's default of 30 s.
		CPULimit:    time.Duration(s.cfg.Limits.CPUMs) * time.Millisecond,
		MemoryLimit: MemoryLimit,
	})
	if err != nil {
		return nil, err
	}
	// Which classes the script exports is known only now.
	if err := actor.Validate(s.cfg, w.Classes()); err != nil {
		w.Close()
		return nil, err
	}
	s.inputs = s.inputs[:0]
	for _, in := range res.Inputs {
		s.inputs = append(s.inputs, filepath.Join(s.cfg.Dir, in))
	}
	return w, nil
}

// vars merges, lowest precedence first: the config's vars, the process
// environment when asked for, .dev.vars, and --var flags.
func (s *Server) vars() (map[string]any, error) {
	vars := maps.Clone(s.cfg.Vars)
	if vars == nil {
		vars = map[string]any{}
	}
	if slices.Contains(s.opts.Environ, "CLOUDFLARE_INCLUDE_PROCESS_ENV=true") {
		for _, kv := range s.opts.Environ {
			if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
				vars[k] = v
			}
		}
	}
	secrets, err := LoadDevVars(s.cfg.Dir)
	if err != nil {
		return nil, err
	}
	for k, v := range secrets {
		vars[k] = v
	}
	for k, v := range s.opts.Vars {
		vars[k] = v
	}
	return vars, nil
}

// LoadDevVars reads the secrets of local development from dir/.dev.vars
// (dotenv syntax), falling back to dir/.env as wrangler does. A missing file
// is no error.
func LoadDevVars(dir string) (map[string]string, error) {
	for _, name := range []string{".dev.vars", ".env"} {
		path := filepath.Join(dir, name)
		vars, err := godotenv.Read(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return vars, nil
	}
	return nil, nil
}
