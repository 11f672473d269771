package docker

// Outbound interception (container.Spec.Egress, container.Interceptor) on
// plain Docker, as researched in egress.md: no sidecar, no Docker network
// of its own. berth works inside each container's network namespace from
// the host:
//
//   - Rules. berth sets the routes over rtnetlink and runs the host's
//     iptables-restore from a thread switched into the namespace, so the
//     image needs no tools and the container (which has no NET_ADMIN)
//     cannot undo them. Without internet (NetworkMode none) a /32 on lo
//     and a default route through it make every connect routable, nat
//     OUTPUT redirects DNS to the responder and every other TCP connection
//     to the interceptor, and filter OUTPUT rejects the rest. With internet
//     (the berth-internet bridge) a chain of berth's own redirects only what
//     the rules capture, and lets berth's own pass-through connections
//     (marked with SO_MARK) out.
//   - Listeners. A TCP interceptor on 127.0.0.1:15001 (intercept.Server:
//     SO_ORIGINAL_DST, HTTP or TLS by the first byte) and, without internet,
//     a UDP DNS responder on 127.0.0.1:15053, both created inside the
//     namespace.
//   - Trust. The CA certificate is bind-mounted read-only at
//     container.EgressCAPath and named by SSL_CERT_FILE (without internet)
//     and NODE_EXTRA_CA_CERTS.
//   - The start window. A container's process runs before berth can reach
//     its namespace. When berth-egress-init (cmd/berth-egress-init) is
//     found, it is bind-mounted and made the entrypoint, with the program's
//     command line as its arguments: it polls 127.0.0.1:15001, which berth
//     listens on only after the rules are in, and then executes the program
//     in its place. Without it the program runs for the length of the
//     setup (about 15 ms here) without interception, failing closed: no
//     route, no DNS.
//   - Lifecycle. Each start of the container (a `docker restart` makes a new
//     namespace) sets everything up again; an exit closes the listeners and
//     the namespace handle, which would otherwise pin the dead namespace.
//     Nothing is left on the host: the rules die with the namespace.

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/intercept"
)

// Interception's fixed places inside a container.
const (
	egressTCPPort = 15001 // the interceptor; berth-egress-init polls it
	egressDNSPort = 15053 // the DNS responder
	// egressLoopAddr is the address on lo the default route of a container
	// without internet takes as its source: 127.0.0.1 is host-scoped and
	// cannot be one.
	egressLoopAddr = "198.19.255.254"
	// egressMark marks berth's own pass-through connections so that the
	// redirect lets them out ("be").
	egressMark = 0x6265
	// egressChain is berth's nat chain in a container with internet.
	egressChain = "BERTH_EGRESS"
	// egressInitTarget is where berth-egress-init is mounted.
	egressInitTarget = "/.berth/egress-init"
	// EgressInitName is the file name of the start gate helper.
	EgressInitName = "berth-egress-init"
)

var _ container.Interceptor = (*Runtime)(nil)

// egressState is the interception of one container, kept across its
// restarts until it is destroyed.
type egressState struct {
	r        *Runtime
	id       string
	table    *container.Egress
	internet bool
	gated    bool // started behind berth-egress-init

	// seq counts the engine's start and exit events; a deferred reaction
	// to one acts only if no later one came.
	seqMu sync.Mutex
	seq   uint64

	mu        sync.Mutex
	startedAt string // the run that is set up; empty when none is
	ns        *os.File
	ln        net.Listener
	dns       net.PacketConn
	srv       *intercept.Server
	stopWatch chan struct{}
	tcpPort   int
	applied   []container.EgressCapture // the captures the redirects have
	// The last setup's cost, for logs and benchmarks.
	rulesTook, totalTook time.Duration
}

// egressCA returns the runtime's CA, loading or creating it on first use.
func (r *Runtime) egressCA() (*intercept.CA, error) {
	r.caOnce.Do(func() {
		dir := r.caDir
		if dir == "" {
			dir, r.caErr = os.MkdirTemp("", "berth-egress-ca-")
			if r.caErr != nil {
				return
			}
			r.caTemp = dir
		}
		r.ca, r.caErr = intercept.LoadCA(dir)
	})
	return r.ca, r.caErr
}

// egressInitPath returns the start gate helper, or "" when there is none
// (logged once).
func (r *Runtime) egressInitPath() string {
	r.initOnce.Do(func() {
		p := r.initOpt
		if p == "" {
			if exe, err := os.Executable(); err == nil {
				if cand := filepath.Join(filepath.Dir(exe), EgressInitName); fileExists(cand) {
					p = cand
				}
			}
		}
		if p == "" {
			p, _ = exec.LookPath(EgressInitName)
		}
		if p != "" {
			if err := checkStatic(p); err != nil {
				r.log.Warn("ignoring the egress start gate helper", "path", p, "err", err.Error())
				p = ""
			}
		}
		if p == "" {
			r.log.Info("no " + EgressInitName + " found (build it with `make build`): a container's outbound interception starts just after its process does; until then its connections fail")
		}
		if abs, err := filepath.Abs(p); err == nil && p != "" {
			p = abs
		}
		r.initPath = p
	})
	return r.initPath
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// checkStatic refuses a helper that needs a dynamic loader, which a FROM
// scratch image does not have.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return errors.New("it is dynamically linked; build it with CGO_ENABLED=0")
		}
	}
	return nil
}

// prepareEgress adjusts a container about to be created with spec.Egress:
// the CA (and the start gate) are mounted, the environment points at the
// CA, and with the gate the program's command line becomes the gate's
// arguments.
func (r *Runtime) prepareEgress(ctx context.Context, spec container.Spec, cfg *dcontainer.Config) (*egressPlan, error) {
	if spec.Egress == nil {
		return nil, nil
	}
	ca, err := r.egressCA()
	if err != nil {
		return nil, err
	}
	plan := &egressPlan{mounts: []mount.Mount{readOnlyBind(ca.CertFile(), container.EgressCAPath)}}
	env := cfg.Env
	setDefault := func(k, v string) {
		if _, ok := spec.Env[k]; !ok {
			env = append(env, k+"="+v)
		}
	}
	if !spec.Internet {
		// Only intercepted traffic leaves, so berth's CA is the only one
		// needed; with internet the container keeps its own trust store.
		setDefault("SSL_CERT_FILE", container.EgressCAPath)
	}
	setDefault("NODE_EXTRA_CA_CERTS", container.EgressCAPath)
	cfg.Env = env
	if gate := r.egressInitPath(); gate != "" {
		argv, err := r.commandLine(ctx, spec)
		if err != nil {
			return nil, err
		}
		if len(argv) > 0 {
			cfg.Entrypoint, cfg.Cmd = []string{egressInitTarget}, argv
			plan.mounts = append(plan.mounts, readOnlyBind(gate, egressInitTarget))
			plan.gated = true
		}
	}
	return plan, nil
}

// egressPlan is what prepareEgress decided for one container.
type egressPlan struct {
	mounts []mount.Mount
	gated  bool
}

func readOnlyBind(source, target string) mount.Mount {
	return mount.Mount{Type: mount.TypeBind, Source: source, Target: target, ReadOnly: true}
}

// commandLine is the program a container of spec runs: the engine's rules
// for merging the spec's entrypoint and command over the image's.
func (r *Runtime) commandLine(ctx context.Context, spec container.Spec) ([]string, error) {
	res, err := r.api.ImageInspect(ctx, spec.Image)
	if err != nil {
		if errors.Is(wrapErr("", err), container.ErrNotFound) {
			return nil, fmt.Errorf("image %q: %w: %w", spec.Image, container.ErrImageNotFound, err)
		}
		return nil, wrapErr(fmt.Sprintf("inspect image %q", spec.Image), err)
	}
	var entrypoint, cmd []string
	if c := res.Config; c != nil {
		entrypoint, cmd = c.Entrypoint, c.Cmd
	}
	if spec.Entrypoint != nil {
		entrypoint, cmd = spec.Entrypoint, nil
	}
	if spec.Cmd != nil {
		cmd = spec.Cmd
	}
	return append(slices.Clone(entrypoint), cmd...), nil
}

// registerEgress records the interception of a container just created.
func (r *Runtime) registerEgress(id string, spec container.Spec, plan *egressPlan) *egressState {
	st := &egressState{r: r, id: id, table: spec.Egress, internet: spec.Internet, gated: plan.gated}
	r.egressMu.Lock()
	r.egress[id] = st
	r.egressMu.Unlock()
	return st
}

func (r *Runtime) egressOf(id string) *egressState {
	r.egressMu.Lock()
	defer r.egressMu.Unlock()
	return r.egress[id]
}

// Intercept implements container.Interceptor.
func (r *Runtime) Intercept(ctx context.Context, id string, egress *container.Egress) error {
	op := fmt.Sprintf("intercept outbound traffic of container %s", shortID(id))
	if egress == nil {
		return fmt.Errorf("%s: %w: no table", op, container.ErrInvalid)
	}
	res, err := r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return wrapErr(op, err)
	}
	c := res.Container
	if c.State == nil || !c.State.Running {
		return fmt.Errorf("%s: %w", op, container.ErrNotRunning)
	}
	internet := c.HostConfig != nil && c.HostConfig.NetworkMode != "none"
	r.egressMu.Lock()
	st := r.egress[c.ID]
	if st == nil {
		st = &egressState{r: r, id: c.ID, table: egress, internet: internet}
		r.egress[c.ID] = st
	}
	r.egressMu.Unlock()
	if st.table != egress {
		return fmt.Errorf("%s: %w: it intercepts through another table", op, container.ErrInvalid)
	}
	if st.setUp(c.State.StartedAt) {
		// Already intercepting: make sure what the rules select now is
		// captured before returning.
		if err := st.refresh(ctx); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return nil
	}
	_, statErr := r.api.ContainerStatPath(ctx, c.ID, client.ContainerStatPathOptions{Path: container.EgressCAPath})
	if ca, err := r.egressCA(); err == nil && statErr != nil {
		// Best effort: the file a container started without interception
		// lacks. A read-only root file system refuses it.
		if err := r.copyCA(ctx, c.ID, ca.PEM()); err != nil {
			r.log.Warn("could not put the egress CA into a running container", "container", shortID(c.ID), "err", err.Error())
		}
	}
	if err := st.setup(ctx); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// copyCA writes the CA certificate to container.EgressCAPath in a running
// container.
func (r *Runtime) copyCA(ctx context.Context, id string, pemData []byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := ""
	for _, part := range strings.Split(strings.Trim(filepath.Dir(container.EgressCAPath), "/"), "/") {
		dir += part + "/"
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(container.EgressCAPath, "/"), Mode: 0o644, Size: int64(len(pemData))}); err != nil {
		return err
	}
	if _, err := tw.Write(pemData); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	_, err := r.api.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf})
	return err
}

// next marks a start or exit event of the container and returns its number.
func (st *egressState) next() uint64 {
	st.seqMu.Lock()
	defer st.seqMu.Unlock()
	st.seq++
	return st.seq
}

func (st *egressState) latest(seq uint64) bool {
	st.seqMu.Lock()
	defer st.seqMu.Unlock()
	return st.seq == seq
}

// egressOnStart reacts to a start event: a restarted container has a new
// namespace to set up.
func (r *Runtime) egressOnStart(id string) {
	st := r.egressOf(id)
	if st == nil {
		return
	}
	seq := st.next()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if !st.latest(seq) {
			return
		}
		if err := st.setup(ctx); err != nil && !errors.Is(err, container.ErrNotRunning) && !errors.Is(err, container.ErrNotFound) {
			r.log.Warn("could not set up outbound interception of a restarted container", "container", shortID(id), "err", err.Error())
		}
	}()
}

// egressOnExit closes what the container's run held.
func (r *Runtime) egressOnExit(id string) {
	st := r.egressOf(id)
	if st == nil {
		return
	}
	seq := st.next()
	go func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.latest(seq) {
			st.teardownLocked()
		}
	}()
}

// egressOnDestroy forgets the container's interception.
func (r *Runtime) egressOnDestroy(id string) {
	r.egressMu.Lock()
	st := r.egress[id]
	delete(r.egress, id)
	r.egressMu.Unlock()
	if st != nil {
		st.next()
		go func() {
			st.mu.Lock()
			defer st.mu.Unlock()
			st.teardownLocked()
		}()
	}
}

func (r *Runtime) closeEgress() {
	r.egressMu.Lock()
	states := r.egress
	r.egress = map[string]*egressState{}
	r.egressMu.Unlock()
	for _, st := range states {
		st.mu.Lock()
		st.teardownLocked()
		st.mu.Unlock()
	}
	if r.caTemp != "" {
		os.RemoveAll(r.caTemp)
	}
}

// setup sets up the interception of the container's current run, unless
// it is set up already. A container that does not run is ErrNotRunning.
func (st *egressState) setup(ctx context.Context) error {
	r := st.r
	st.mu.Lock()
	defer st.mu.Unlock()
	begin := time.Now()
	res, err := r.api.ContainerInspect(ctx, st.id, client.ContainerInspectOptions{})
	if err != nil {
		return wrapErr("inspect", err)
	}
	c := res.Container
	if c.State == nil || !c.State.Running || c.NetworkSettings == nil || c.NetworkSettings.SandboxKey == "" {
		return container.ErrNotRunning
	}
	if st.startedAt == c.State.StartedAt && st.ln != nil {
		return nil
	}
	st.teardownLocked()
	ca, err := r.egressCA()
	if err != nil {
		return err
	}
	nsPath := c.NetworkSettings.SandboxKey
	ns, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	st.ns = ns
	fail := func(err error) error {
		st.teardownLocked()
		return err
	}
	tcpPort, dnsPort := egressTCPPort, 0
	if !st.gated {
		// The program may already hold the usual ports: listen first, on
		// another port if need be, and redirect to wherever that is.
		if st.ln, err = listenInNetns(ns, egressTCPPort); err != nil {
			return fail(err)
		}
		tcpPort = st.ln.Addr().(*net.TCPAddr).Port
	}
	if !st.internet {
		if st.dns, err = listenPacketInNetns(ns, egressDNSPort); err != nil {
			return fail(err)
		}
		dnsPort = st.dns.LocalAddr().(*net.UDPAddr).Port
	}
	t := time.Now()
	captures := st.table.Captures()
	if err := applyEgressRules(ctx, ns, st.internet, tcpPort, dnsPort, captures, true); err != nil {
		return fail(err)
	}
	st.rulesTook = time.Since(t)
	st.tcpPort, st.applied = tcpPort, captures
	if st.gated {
		// Last: the gate lets the program run as soon as this accepts.
		if st.ln, err = listenInNetns(ns, egressTCPPort); err != nil {
			return fail(err)
		}
	}
	srv := &intercept.Server{Egress: st.table, CA: ca, Internet: st.internet, Logger: r.log}
	if st.internet {
		srv.Dial = func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) { return dialMarked(ctx, ns, dst) }
	}
	st.srv = srv
	go func(ln net.Listener) { _ = srv.Serve(ln, originalDst) }(st.ln)
	if st.dns != nil {
		go func(pc net.PacketConn) { _ = intercept.ServeDNS(pc, intercept.FakeIP) }(st.dns)
	}
	if st.internet {
		st.stopWatch = make(chan struct{})
		go st.watch(st.stopWatch)
	}
	st.startedAt = c.State.StartedAt
	st.totalTook = time.Since(begin)
	r.log.Debug("set up outbound interception", "container", shortID(st.id), "internet", st.internet, "gated", st.gated,
		"rules", st.rulesTook.String(), "total", st.totalTook.String())
	return nil
}

// setUp reports whether the run that started at startedAt is set up.
func (st *egressState) setUp(startedAt string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ln != nil && st.startedAt == startedAt
}

// refresh re-applies the redirects of a container with internet if its
// table's captures changed since they were applied.
func (st *egressState) refresh(ctx context.Context) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.internet || st.ln == nil {
		return nil
	}
	captures := st.table.Captures()
	if slices.Equal(captures, st.applied) {
		return nil
	}
	if err := applyEgressRules(ctx, st.ns, true, st.tcpPort, 0, captures, false); err != nil {
		return err
	}
	st.applied = captures
	return nil
}

// watch refreshes the redirects of a container with internet when its
// table gains a rule (Intercept does it at once).
func (st *egressState) watch(stop chan struct{}) {
	for {
		select {
		case <-st.table.Changed():
		case <-stop:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := st.refresh(ctx)
		cancel()
		if err != nil {
			select {
			case <-stop: // the container went meanwhile
			default:
				st.r.log.Warn("could not update the outbound interception of a container", "container", shortID(st.id), "err", err.Error())
			}
		}
	}
}

// teardownLocked closes the run's listeners and namespace handle.
func (st *egressState) teardownLocked() {
	if st.stopWatch != nil {
		close(st.stopWatch)
		st.stopWatch = nil
	}
	if st.srv != nil {
		st.srv.Close()
		st.srv = nil
	}
	if st.ln != nil {
		st.ln.Close()
	}
	if st.dns != nil {
		st.dns.Close()
	}
	if st.ns != nil {
		st.ns.Close()
	}
	st.ln, st.dns, st.ns = nil, nil, nil
	st.startedAt, st.applied = "", nil
}

// egressRules is the iptables-restore input for a container's namespace,
// and whether it must be restored with --noflush. Without internet it
// replaces the nat and filter tables whole, in one transaction, so that
// applying it again is idempotent. With internet Docker keeps rules of its
// own there (the embedded DNS), so only berth's chain is replaced; first
// (the namespace's first time) also jumps to it from OUTPUT.
func egressRules(internet bool, tcpPort, dnsPort int, captures []container.EgressCapture, first bool) (rules string, noflush bool) {
	var b strings.Builder
	if !internet {
		b.WriteString("*nat\n")
		fmt.Fprintf(&b, "-A OUTPUT -p udp --dport 53 -j REDIRECT --to-ports %d\n", dnsPort)
		fmt.Fprintf(&b, "-A OUTPUT -p tcp --dport 53 -j REDIRECT --to-ports %d\n", dnsPort)
		fmt.Fprintf(&b, "-A OUTPUT -p tcp ! -d 127.0.0.0/8 -j REDIRECT --to-ports %d\n", tcpPort)
		b.WriteString("COMMIT\n*filter\n")
		// LOCAL, not 127/8: the interceptor's replies go to egressLoopAddr.
		b.WriteString("-A OUTPUT -m addrtype --dst-type LOCAL -j ACCEPT\n")
		b.WriteString("-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset\n")
		b.WriteString("-A OUTPUT -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n")
		return b.String(), false
	}
	fmt.Fprintf(&b, "*nat\n:%s - [0:0]\n", egressChain)
	fmt.Fprintf(&b, "-A %s -m mark --mark %#x -j RETURN\n", egressChain, egressMark)
	for _, c := range captures {
		if c.Net.IsValid() && !c.Net.Addr().Is4() {
			continue // no IPv6 on berth's bridge
		}
		dst := ""
		if c.Net.IsValid() {
			dst = "-d " + c.Net.String() + " "
		}
		fmt.Fprintf(&b, "-A %s -p tcp %s--dport %d -j REDIRECT --to-ports %d\n", egressChain, dst, c.Port, tcpPort)
	}
	if first {
		fmt.Fprintf(&b, "-I OUTPUT 1 -j %s\n", egressChain)
	}
	b.WriteString("COMMIT\n")
	return b.String(), true
}

// applyEgressRules installs the rules in the namespace ns: the routes over
// rtnetlink and the rules with the host's iptables-restore, started from a
// thread switched into ns, so that it runs there (a child process starts
// in its parent thread's namespaces). The rules are written to it only
// once its namespace has been checked.
func applyEgressRules(ctx context.Context, ns *os.File, internet bool, tcpPort, dnsPort int, captures []container.EgressCapture, first bool) error {
	restore, err := exec.LookPath("iptables-restore")
	if err != nil {
		return fmt.Errorf("outbound interception needs iptables-restore on the host: %w", err)
	}
	rules, noflush := egressRules(internet, tcpPort, dnsPort, captures, first)
	var args []string
	if noflush {
		args = append(args, "--noflush")
	}
	cmd := exec.CommandContext(ctx, restore, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = inNetns(ns, func() error {
		if ok, err := sameNetns("/proc/thread-self/ns/net", ns); err != nil || !ok {
			return fmt.Errorf("the thread is not in the container's network namespace (%v)", err)
		}
		if !internet {
			if err := routeDefaultViaLoopback(netip.MustParseAddr(egressLoopAddr)); err != nil {
				return err
			}
		}
		return cmd.Start()
	})
	if err != nil {
		stdin.Close()
		if cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		return fmt.Errorf("install interception rules in the container's network namespace: %w", err)
	}
	if ok, err := sameNetns(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), ns); err != nil || !ok {
		cmd.Process.Kill()
		stdin.Close()
		cmd.Wait()
		return fmt.Errorf("install interception rules: iptables-restore did not start in the container's network namespace (%v)", err)
	}
	_, werr := io.WriteString(stdin, rules)
	stdin.Close()
	if err := cmd.Wait(); err != nil || werr != nil {
		return fmt.Errorf("install interception rules in the container's network namespace (iptables-restore of the host): %w: %s",
			errors.Join(err, werr), bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// inNetns runs fn on a thread switched into the namespace ns. Sockets fn
// creates stay in that namespace.
func inNetns(ns *os.File, fn func() error) error {
	raw, err := ns.SyscallConn()
	if err != nil {
		return errNetnsClosed
	}
	runtime.LockOSThread()
	var setnsErr error
	if err := raw.Control(func(fd uintptr) { setnsErr = unix.Setns(int(fd), unix.CLONE_NEWNET) }); err != nil {
		runtime.UnlockOSThread()
		return errNetnsClosed
	}
	if setnsErr != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter container network namespace: %w", setnsErr)
	}
	ferr := fn()
	if err := unix.Setns(int(hostNetns.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with the goroutine.
		return fmt.Errorf("return to host network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// listenInNetns listens on 127.0.0.1:port in ns, or on a port of the
// kernel's choosing when port is taken.
func listenInNetns(ns *os.File, port int) (net.Listener, error) {
	return listenLocal(ns, port, "intercepted connections", func(addr string) (net.Listener, error) { return net.Listen("tcp4", addr) })
}

func listenPacketInNetns(ns *os.File, port int) (net.PacketConn, error) {
	return listenLocal(ns, port, "DNS queries", func(addr string) (net.PacketConn, error) { return net.ListenPacket("udp4", addr) })
}

// listenLocal is listen on 127.0.0.1:port in ns, or on 127.0.0.1:0 when
// port is taken; what names what it listens for.
func listenLocal[T any](ns *os.File, port int, what string, listen func(addr string) (T, error)) (T, error) {
	var l T
	err := inNetns(ns, func() (err error) {
		l, err = listen("127.0.0.1:" + strconv.Itoa(port))
		if errors.Is(err, syscall.EADDRINUSE) {
			l, err = listen("127.0.0.1:0")
		}
		return err
	})
	if err != nil {
		var zero T
		return zero, fmt.Errorf("listen for %s: %w", what, err)
	}
	return l, nil
}

// dialMarked connects to dst from inside ns with berth's mark, so that the
// redirect lets the connection out: the container's own route, from its own
// address.
func dialMarked(ctx context.Context, ns *os.File, dst netip.AddrPort) (net.Conn, error) {
	return dialInNetns(ctx, ns, "tcp", dst.String(), func(fd uintptr) error {
		return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, egressMark)
	})
}

// originalDst reads where a redirected connection was going
// (SO_ORIGINAL_DST); a connection that was not redirected reports its own
// local address.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var dst netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		const soOriginalDst = 80
		m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, soOriginalDst)
		if err != nil {
			serr = err
			return
		}
		b := m.Multiaddr // struct sockaddr_in: family, port (big endian), address
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), uint16(b[2])<<8|uint16(b[3]))
	})
	if err == nil {
		err = serr
	}
	if errors.Is(err, unix.ENOENT) {
		// No NAT entry: not redirected, e.g. the start gate's probe.
		return netip.ParseAddrPort(c.LocalAddr().String())
	}
	return dst, err
}
