package docker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	dcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
)

// keptCapabilities is what a container keeps of Docker's default set. Gone
// are NET_RAW (raw sockets: spoofing, ARP games on a bridge), MKNOD,
// AUDIT_WRITE, SYS_CHROOT and SETFCAP, which ordinary server programs do not
// use.
var keptCapabilities = []string{
	"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
	"SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE",
}

// Log rotation for every container: at most 30 MB of logs on disk.
const (
	logMaxSize  = "10m"
	logMaxFiles = "3"
)

// hostConfig is the hardened host configuration every berth container gets:
// never privileged, no new privileges, a reduced capability set, no host
// namespaces, docker-init as PID 1 (so SIGTERM reaches apps that do not
// expect to be PID 1), capped logs and no published ports.
func (r *Runtime) hostConfig(spec container.Spec, withDiskQuota bool) *dcontainer.HostConfig {
	init := true
	hc := &dcontainer.HostConfig{
		Privileged:  false,
		SecurityOpt: []string{"no-new-privileges"},
		CapDrop:     []string{"ALL"},
		CapAdd:      slices.Clone(keptCapabilities),
		Init:        &init,
		IpcMode:     dcontainer.IPCModePrivate,
		LogConfig: dcontainer.LogConfig{
			Type:   "json-file",
			Config: map[string]string{"max-size": logMaxSize, "max-file": logMaxFiles},
		},
		NetworkMode: "none",
	}
	if spec.Internet {
		hc.NetworkMode = dcontainer.NetworkMode(r.inetName)
	}
	lim := spec.Limits
	if lim.NanoCPUs > 0 {
		hc.CPUPeriod, hc.CPUQuota = cfsQuota(lim.NanoCPUs)
	}
	if lim.MemoryBytes > 0 {
		hc.Memory = lim.MemoryBytes
		hc.MemorySwap = lim.MemoryBytes // equal to Memory: no swap
	}
	if lim.Pids > 0 {
		pids := lim.Pids
		hc.PidsLimit = &pids
	}
	if withDiskQuota && lim.DiskBytes > 0 {
		hc.StorageOpt = map[string]string{"size": strconv.FormatInt(lim.DiskBytes, 10)}
	}
	return hc
}

func validateSpec(spec container.Spec) error {
	switch {
	case spec.Image == "":
		return fmt.Errorf("start container: %w: no image given", container.ErrInvalid)
	case spec.Limits.NanoCPUs < 0, spec.Limits.MemoryBytes < 0, spec.Limits.Pids < 0, spec.Limits.DiskBytes < 0:
		return fmt.Errorf("start container from %q: %w: negative limit %+v", spec.Image, container.ErrInvalid, spec.Limits)
	case spec.Limits.MemoryBytes > 0 && spec.Limits.MemoryBytes < 6*1024*1024:
		return fmt.Errorf("start container from %q: %w: memory limit %d bytes is below the engine's minimum of 6 MiB", spec.Image, container.ErrInvalid, spec.Limits.MemoryBytes)
	}
	for k := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("start container from %q: %w: bad environment variable name %q", spec.Image, container.ErrInvalid, k)
		}
	}
	return nil
}

// Start implements container.Runtime.
func (r *Runtime) Start(ctx context.Context, spec container.Spec) (container.Instance, error) {
	if err := validateSpec(spec); err != nil {
		return container.Instance{}, err
	}
	what := spec.Image
	if spec.Name != "" {
		what = spec.Name
	}
	op := fmt.Sprintf("start container %q", what)
	if spec.Internet {
		if err := r.ensureInternetNetwork(ctx); err != nil {
			return container.Instance{}, fmt.Errorf("%s: %w", op, err)
		}
	}
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = make(map[string]string)
	}
	labels[container.LabelManaged] = "1"
	cfg := &dcontainer.Config{
		Image:      spec.Image,
		Env:        envList(spec.Env),
		Labels:     labels,
		Entrypoint: spec.Entrypoint,
		Cmd:        spec.Cmd,
	}
	if spec.Entrypoint != nil && len(spec.Entrypoint) == 0 {
		// An empty override must reach the engine as [""] to clear the
		// image's entrypoint rather than be dropped as unset.
		cfg.Entrypoint = []string{""}
	}
	plan, err := r.prepareEgress(ctx, spec, cfg)
	if err != nil {
		return container.Instance{}, fmt.Errorf("%s: outbound interception: %w", op, err)
	}
	id, err := r.create(ctx, spec, cfg, plan)
	if err != nil {
		return container.Instance{}, fmt.Errorf("%s: %w", op, err)
	}
	var egress *egressState
	if plan != nil {
		egress = r.registerEgress(id, spec, plan)
	}
	// Do not leave a created-but-dead container behind.
	removeCreated := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		r.api.ContainerRemove(rctx, id, client.ContainerRemoveOptions{Force: true})
		cancel()
		r.egressOnDestroy(id)
	}
	// docker-init runs the program, so a missing one would only show as a
	// quick exit 127 after Start returned; look it up first.
	if err := r.checkEntrypoint(ctx, id); err != nil {
		removeCreated()
		return container.Instance{}, fmt.Errorf("%s: %w", op, err)
	}
	if _, err := r.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		removeCreated()
		if isMissingExecutable(err.Error()) {
			return container.Instance{}, fmt.Errorf("%s: %w: %w", op, container.ErrExecutableNotFound, err)
		}
		return container.Instance{}, wrapErr(op, err)
	}
	if egress != nil {
		if err := egress.setup(ctx); err != nil && !errors.Is(err, container.ErrNotRunning) {
			removeCreated()
			return container.Instance{}, fmt.Errorf("%s: outbound interception: %w", op, err)
		}
	}
	return r.Inspect(ctx, id)
}

// create creates the container, dropping the disk quota (once, with a log
// line) when the storage driver cannot enforce one.
func (r *Runtime) create(ctx context.Context, spec container.Spec, cfg *dcontainer.Config, egress *egressPlan) (string, error) {
	for attempt := 0; ; attempt++ {
		withQuota := !r.diskQuotaUnsupported.Load()
		hc := r.hostConfig(spec, withQuota)
		if egress != nil {
			hc.Mounts = slices.Clone(egress.mounts)
		}
		res, err := r.api.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name:       spec.Name,
			Config:     cfg,
			HostConfig: hc,
		})
		switch {
		case err == nil:
			return res.ID, nil
		case withQuota && spec.Limits.DiskBytes > 0 && isStorageOptUnsupported(err):
			r.diskQuotaUnsupported.Store(true)
			r.diskQuotaLogOnce.Do(func() {
				r.log.Warn("the Docker storage driver cannot limit container disk size; containers run without a disk limit",
					"err", err.Error())
			})
			continue
		case spec.Internet && attempt == 0 && cerrdefs.IsNotFound(err) && strings.Contains(err.Error(), "network"):
			// The network was removed behind berth's back.
			r.netMu.Lock()
			r.netEnsured = false
			r.netMu.Unlock()
			if nerr := r.ensureInternetNetwork(ctx); nerr != nil {
				return "", nerr
			}
			continue
		case cerrdefs.IsConflict(err) && spec.Name != "":
			return "", fmt.Errorf("name %q: %w: %w", spec.Name, container.ErrAlreadyExists, err)
		case cerrdefs.IsNotFound(err):
			return "", fmt.Errorf("image %q: %w: %w", spec.Image, container.ErrImageNotFound, err)
		}
		return "", wrapErr("create", err)
	}
}

// checkEntrypoint looks up the program a created container will run.
func (r *Runtime) checkEntrypoint(ctx context.Context, id string) error {
	res, err := r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return wrapErr("inspect created container", err)
	}
	c := res.Container
	if c.Path == egressInitTarget {
		// Behind the interception start gate: the program is its argument.
		c.Path = ""
		if len(c.Args) > 0 {
			c.Path = c.Args[0]
		}
	}
	if c.Path == "" {
		return fmt.Errorf("%w: the image names no entrypoint or command", container.ErrInvalid)
	}
	pathEnv, ok := containerPath(c)
	if !ok {
		pathEnv = defaultPath
	}
	workDir := ""
	if c.Config != nil {
		workDir = c.Config.WorkingDir
	}
	return r.lookPath(ctx, c.ID, c.Path, pathEnv, workDir)
}

// isStorageOptUnsupported recognises the engine refusing a size StorageOpt,
// e.g. overlay2 on a filesystem without project quotas.
func isStorageOptUnsupported(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "storage-opt") || strings.Contains(msg, "storage opt") ||
		strings.Contains(msg, "StorageOpt") || strings.Contains(msg, "quota")
}

func isMissingExecutable(msg string) bool {
	return strings.Contains(msg, "executable file not found") ||
		(strings.Contains(msg, "OCI runtime") && strings.Contains(msg, "no such file or directory"))
}

func (r *Runtime) ensureInternetNetwork(ctx context.Context) error {
	r.netMu.Lock()
	defer r.netMu.Unlock()
	if r.netEnsured {
		return nil
	}
	_, err := r.api.NetworkInspect(ctx, r.inetName, client.NetworkInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		_, err = r.api.NetworkCreate(ctx, r.inetName, client.NetworkCreateOptions{
			Driver: "bridge",
			// Containers on it reach the internet but not one another.
			Options: map[string]string{"com.docker.network.bridge.enable_icc": "false"},
			Labels:  map[string]string{container.LabelManaged: "1"},
		})
		if cerrdefs.IsConflict(err) {
			err = nil // created concurrently
		}
	}
	if err != nil {
		return wrapErr(fmt.Sprintf("network %q", r.inetName), err)
	}
	r.netEnsured = true
	return nil
}

func envList(env map[string]string) []string {
	keys := slices.Sorted(maps.Keys(env))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

// Inspect implements container.Runtime.
func (r *Runtime) Inspect(ctx context.Context, id string) (container.Instance, error) {
	res, err := r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return container.Instance{}, wrapErr(fmt.Sprintf("inspect container %s", shortID(id)), err)
	}
	return instanceFrom(res.Container), nil
}

func instanceFrom(c dcontainer.InspectResponse) container.Instance {
	inst := container.Instance{
		ID:      c.ID,
		Name:    strings.TrimPrefix(c.Name, "/"),
		Created: parseTime(c.Created),
	}
	if c.Config != nil {
		inst.Image = c.Config.Image
		inst.Labels = maps.Clone(c.Config.Labels)
	}
	if s := c.State; s != nil {
		inst.Running = s.Running
		inst.Paused = s.Paused
		inst.StartedAt = parseTime(s.StartedAt)
		if exit, done := exitFromState(s); done {
			inst.Exit = &exit
		}
	}
	return inst
}

// exitFromState reports how a container ended, and whether it has.
func exitFromState(s *dcontainer.State) (container.Exit, bool) {
	if s == nil {
		return container.Exit{}, false
	}
	switch s.Status {
	case dcontainer.StateExited, dcontainer.StateDead:
		return container.Exit{Code: s.ExitCode, OOMKilled: s.OOMKilled, At: parseTime(s.FinishedAt)}, true
	}
	return container.Exit{}, false
}

// parseTime reads the engine's timestamps; its "never" (year 1) is zero.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// List implements container.Runtime.
func (r *Runtime) List(ctx context.Context, labels map[string]string) ([]container.Instance, error) {
	f := make(client.Filters).Add("label", container.LabelManaged+"=1")
	for k, v := range labels {
		if v == "" {
			f.Add("label", k)
		} else {
			f.Add("label", k+"="+v)
		}
	}
	res, err := r.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, wrapErr("list containers", err)
	}
	out := make([]container.Instance, 0, len(res.Items))
	for _, s := range res.Items {
		// The summary lacks exit details and start times; inspect is the
		// one source of truth for an Instance.
		inst, err := r.Inspect(ctx, s.ID)
		if errors.Is(err, container.ErrNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		out = append(out, inst)
	}
	return out, nil
}

// Signal implements container.Runtime.
func (r *Runtime) Signal(ctx context.Context, id string, sig syscall.Signal) error {
	op := fmt.Sprintf("signal %d to container %s", int(sig), shortID(id))
	if sig <= 0 || sig > 64 {
		return fmt.Errorf("%s: %w: no such signal", op, container.ErrInvalid)
	}
	_, err := r.api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: strconv.Itoa(int(sig))})
	return wrapErr(op, err)
}

// Stop implements container.Runtime. It signals and waits itself rather than
// use the engine's stop, whose grace period has whole-second granularity;
// the exit arrives through the events hub.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	op := fmt.Sprintf("stop container %s", shortID(id))
	res, err := r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return wrapErr(op, err)
	}
	id = res.Container.ID
	exited, stop := r.hub.watch(id)
	defer stop()
	// Inspect again now that the watch is in place, so an exit in between
	// is not missed.
	res, err = r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return wrapErr(op, err)
	}
	s := res.Container.State
	if s == nil || !s.Running {
		return nil
	}
	if s.Paused {
		// A frozen process cannot act on SIGTERM.
		if _, err := r.api.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{}); err != nil && !isNotPaused(err) {
			return wrapErr(op, err)
		}
	}
	if _, err := r.api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "SIGTERM"}); err != nil {
		if cerrdefs.IsConflict(err) && isNotRunningMessage(err.Error()) {
			return nil
		}
		return wrapErr(op, err)
	}
	timer := time.NewTimer(max(grace, 0))
	defer timer.Stop()
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	case <-timer.C:
	}
	if _, err := r.api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		if cerrdefs.IsConflict(err) && isNotRunningMessage(err.Error()) {
			return nil
		}
		return wrapErr(op, err)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
}

func isNotPaused(err error) bool { return strings.Contains(err.Error(), "is not paused") }

// Destroy implements container.Runtime.
func (r *Runtime) Destroy(ctx context.Context, id string) error {
	// Watching first lets Destroy return only once the hub has seen the
	// container go, so that a Wait right after it finds the exit.
	gone, stop := r.hub.watch(id)
	defer stop()
	_, err := r.api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	r.netns.drop(id)
	switch {
	case err == nil && len(id) != 64:
		return nil // a name or short id: events carry full ids
	case err == nil:
		timer := time.NewTimer(2 * time.Second) // the stream may be down
		defer timer.Stop()
		select {
		case <-gone:
		case <-timer.C:
		case <-ctx.Done():
		}
		return nil
	case cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress"):
		return nil
	}
	return wrapErr(fmt.Sprintf("destroy container %s", shortID(id)), err)
}

// Pause implements container.Pauser. Pausing a paused container is a no-op.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	done := r.hub.intend(id, true)
	_, err := r.api.ContainerPause(ctx, id, client.ContainerPauseOptions{})
	if err != nil && strings.Contains(err.Error(), "is already paused") {
		err = nil
	}
	done(err == nil)
	return wrapErr(fmt.Sprintf("pause container %s", shortID(id)), err)
}

// Unpause implements container.Pauser. Unpausing a container that is not
// paused is a no-op if it runs, ErrNotRunning if it does not.
func (r *Runtime) Unpause(ctx context.Context, id string) error {
	op := fmt.Sprintf("unpause container %s", shortID(id))
	done := r.hub.intend(id, false)
	_, err := r.api.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
	done(err == nil || isNotPaused(err))
	if err != nil && isNotPaused(err) {
		res, ierr := r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if ierr != nil {
			return wrapErr(op, ierr)
		}
		if res.Container.State == nil || !res.Container.State.Running {
			return fmt.Errorf("%s: %w", op, container.ErrNotRunning)
		}
		return nil
	}
	return wrapErr(op, err)
}

// Dial implements container.Runtime.
func (r *Runtime) Dial(ctx context.Context, id string, port int) (net.Conn, error) {
	op := fmt.Sprintf("dial container %s port %d", shortID(id), port)
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("%s: %w: port out of range", op, container.ErrInvalid)
	}
	h := r.netns.get(id)
	for attempt := 0; ; attempt++ {
		if h == nil {
			var err error
			if h, err = r.openNetns(ctx, id); err != nil {
				return nil, fmt.Errorf("%s: %w", op, err)
			}
		}
		conn, err := h.dialLoopback(ctx, port)
		if err == nil {
			return conn, nil
		}
		if errors.Is(err, errNetnsClosed) && attempt == 0 {
			h = nil // dropped under us: the container exited or restarted
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		// Refused: either nothing listens, or the handle is for a
		// namespace whose container has gone. The engine decides.
		fresh, oerr := r.openNetns(ctx, id)
		if oerr != nil {
			return nil, fmt.Errorf("%s: %w", op, oerr)
		}
		if fresh != h && attempt == 0 {
			h = fresh
			continue
		}
		return nil, fmt.Errorf("%s: %w: %w", op, container.ErrPortNotListening, err)
	}
}

// openNetns opens (or reuses) the namespace of a running container.
func (r *Runtime) openNetns(ctx context.Context, id string) (*netnsHandle, error) {
	res, err := r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, wrapErr("inspect", err)
	}
	c := res.Container
	if c.State == nil || !c.State.Running || c.NetworkSettings == nil || c.NetworkSettings.SandboxKey == "" {
		return nil, container.ErrNotRunning
	}
	h, err := r.netns.open(c.ID, c.NetworkSettings.SandboxKey)
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	return h, nil
}

// Bounds of a CFS quota and period, in µs, as the kernel (and the engine)
// take them.
const (
	cfsPeriod   = 10_000
	cfsMinQuota = 1_000
)

// cfsQuota turns a share of CPUs into a CFS quota over a short period.
// Docker's --cpus spreads the share over 100 ms periods: a container that
// spends its quota early waits out the rest of the period, which for a
// 1/16-vCPU instance type is a stall of up to 94 ms on every burst (the
// p99 of a lite container under load was ~90 ms). A 10 ms period, or the
// shortest that still gives the kernel's 1 ms minimum quota, keeps the same
// share with stalls about a tenth as long.
func cfsQuota(nanoCPUs int64) (period, quota int64) {
	period, quota = cfsPeriod, nanoCPUs*cfsPeriod/1e9
	if quota < cfsMinQuota {
		period, quota = cfsMinQuota*1e9/nanoCPUs, cfsMinQuota
	}
	return period, quota
}
