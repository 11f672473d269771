// Package docker is the container.Runtime on the Docker Engine API. It is the
// only package of berth that imports the moby client.
//
// Design notes that the code relies on:
//   - One events stream, filtered on berth.managed=1, feeds a hub that serves
//     Wait and Events; nothing polls a container.
//   - Containers publish no ports. berth reaches a container's port by
//     creating its socket inside the container's network namespace (see
//     netns.go), so only this process can connect.
//   - Every container is hardened the same way (see hostConfig).
package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/intercept"
)

// DefaultInternetNetwork is the bridge network containers with Internet set
// join. berth creates it on demand with inter-container traffic disabled.
const DefaultInternetNetwork = "berth-internet"

// Options configure a Runtime. The zero value talks to the engine named by
// DOCKER_HOST (or the default socket), logs to slog.Default and uses the
// wall clock.
type Options struct {
	// Host is the engine address, e.g. unix:///var/run/docker.sock; empty
	// uses the environment.
	Host   string
	Logger *slog.Logger
	// Clock stamps the readings the runtime makes itself (Stats.At, and
	// exits the engine reports without a time).
	Clock func() time.Time
	// InternetNetwork overrides DefaultInternetNetwork.
	InternetNetwork string
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// reopen a broken events stream (defaults 100 ms and 5 s).
	ReconnectMin, ReconnectMax time.Duration
	// EgressCADir holds the CA that signs intercepted HTTPS (created on
	// first use; see egress.go). Empty uses a CA of this Runtime's own in
	// a temporary directory, removed by Close.
	EgressCADir string
	// EgressInit is the path of the static berth-egress-init, which holds a
	// container's program back until its interception is in place. Empty
	// looks for it next to the running executable, then in $PATH.
	EgressInit string
}

// Runtime is a container.Runtime and container.Pauser on a Docker engine.
type Runtime struct {
	api      *client.Client
	log      *slog.Logger
	now      func() time.Time
	inetName string

	hub    *hub
	netns  *netnsCache
	cancel context.CancelFunc
	done   chan struct{}

	// diskQuotaUnsupported is set once the engine has refused a StorageOpt
	// size, so later starts do not ask again (and the log says it once).
	diskQuotaUnsupported atomic.Bool
	diskQuotaLogOnce     sync.Once

	netMu      sync.Mutex
	netEnsured bool

	// Outbound interception (egress.go).
	caDir    string
	caOnce   sync.Once
	ca       *intercept.CA
	caErr    error
	caTemp   string // a temporary CA directory Close removes
	initOpt  string
	initOnce sync.Once
	initPath string
	egressMu sync.Mutex
	egress   map[string]*egressState // by container id
}

var (
	_ container.Runtime = (*Runtime)(nil)
	_ container.Pauser  = (*Runtime)(nil)
)

// New connects to the engine (negotiating the API version) and starts the
// events stream. It does not fail when the engine is down: the stream keeps
// retrying and calls return errors wrapping container.ErrUnavailable.
func New(opts Options) (*Runtime, error) {
	clientOpts := []client.Opt{client.FromEnv}
	if opts.Host != "" {
		clientOpts = append(clientOpts, client.WithHost(opts.Host))
	}
	api, err := client.New(clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if err := openHostNetns(); err != nil {
		api.Close()
		return nil, err
	}
	r := &Runtime{
		api:      api,
		log:      opts.Logger,
		now:      opts.Clock,
		inetName: opts.InternetNetwork,
		done:     make(chan struct{}),
		caDir:    opts.EgressCADir,
		initOpt:  opts.EgressInit,
		egress:   make(map[string]*egressState),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.inetName == "" {
		r.inetName = DefaultInternetNetwork
	}
	backoffMin, backoffMax := opts.ReconnectMin, opts.ReconnectMax
	if backoffMin <= 0 {
		backoffMin = 100 * time.Millisecond
	}
	if backoffMax < backoffMin {
		backoffMax = max(5*time.Second, backoffMin)
	}
	r.netns = newNetnsCache()
	r.hub = newHub(r, backoffMin, backoffMax)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	ready := make(chan struct{})
	go func() {
		defer close(r.done)
		r.hub.run(ctx, ready)
	}()
	// Give the stream a moment to connect so that the first Wait does not
	// have to fall back on reconciliation; a down engine does not block New.
	select {
	case <-ready:
	case <-time.After(2 * time.Second):
	}
	return r, nil
}

// Close stops the events stream, closes the namespace handles and the client.
// Pending Waits and Events readers are released.
func (r *Runtime) Close() error {
	r.cancel()
	<-r.done
	r.netns.closeAll()
	r.closeEgress()
	return r.api.Close()
}

// wrapErr adds op to err and maps the engine's error classes onto berth's
// sentinels, keeping the engine's own error in the chain.
func wrapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", op, err)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: %w", op, container.ErrNotFound, err)
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%s: %w: %w", op, container.ErrUnavailable, err)
	case cerrdefs.IsConflict(err) && isNotRunningMessage(err.Error()):
		return fmt.Errorf("%s: %w: %w", op, container.ErrNotRunning, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isNotRunningMessage(msg string) bool {
	return strings.Contains(msg, "is not running") || strings.Contains(msg, "is restarting")
}

// shortID is how ids appear in error messages.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
