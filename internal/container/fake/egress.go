package fake

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/intercept"
)

// Outbound traffic of fake containers. A container's program calls out
// through its System (testapp's DialContext, LookupHost and ReadFile):
//
//   - without Internet and without Spec.Egress, there is no route: dials
//     and lookups fail at once;
//   - with Spec.Egress, a connection the interception captures (every one
//     without Internet, Egress.Captured ones with it) is handed, over a
//     socket pair, to an intercept.Server, the same code the Docker runtime
//     runs, and every name resolves to intercept.FakeIP without Internet;
//   - with Internet, anything else is dialled for real, from this host.
//
// The CA certificate is the file at container.EgressCAPath.

var _ container.Interceptor = (*Runtime)(nil)

// boxEgress is the interception of one fake container.
type boxEgress struct {
	table *container.Egress
	srv   *intercept.Server
}

func (rt *Runtime) egressCA() (*intercept.CA, error) {
	rt.caOnce.Do(func() {
		if rt.ca == nil {
			rt.ca, rt.caErr = intercept.NewCA()
		}
	})
	return rt.ca, rt.caErr
}

// newBoxEgress sets up the interception of c through table. The caller
// holds rt.mu.
func (rt *Runtime) newBoxEgress(internet bool, table *container.Egress) (*boxEgress, error) {
	ca, err := rt.egressCA()
	if err != nil {
		return nil, err
	}
	srv := &intercept.Server{Egress: table, CA: ca, Internet: internet}
	if internet {
		srv.Dial = func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", dst.String())
		}
	}
	return &boxEgress{table: table, srv: srv}, nil
}

// egressEnv points the container's TLS clients at the CA, as the Docker
// runtime does.
func egressEnv(env []string, spec container.Spec) []string {
	if spec.Egress == nil {
		return env
	}
	set := func(k string) {
		if _, ok := spec.Env[k]; !ok {
			env = setEnv(env, k, container.EgressCAPath)
		}
	}
	if !spec.Internet {
		set("SSL_CERT_FILE")
	}
	set("NODE_EXTRA_CA_CERTS")
	return env
}

// Intercept implements container.Interceptor.
func (rt *Runtime) Intercept(ctx context.Context, id string, egress *container.Egress) error {
	if egress == nil {
		return fmt.Errorf("intercept outbound traffic of container %q: %w: no table", id, container.ErrInvalid)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	c, err := rt.box("intercept outbound traffic of", id)
	if err != nil {
		return err
	}
	if !c.running {
		return fmt.Errorf("intercept outbound traffic of container %q: %w", id, container.ErrNotRunning)
	}
	switch {
	case c.egress == nil:
		e, err := rt.newBoxEgress(c.internet, egress)
		if err != nil {
			return err
		}
		c.egress = e
	case c.egress.table != egress:
		return fmt.Errorf("intercept outbound traffic of container %q: %w: it intercepts through another table", id, container.ErrInvalid)
	}
	return nil
}

// outbound is the outbound side of a container's System.
type outbound struct {
	rt *Runtime
	c  *box
}

func (rt *Runtime) outboundOf(c *box) *outbound { return &outbound{rt: rt, c: c} }

var errNoRoute = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ENETUNREACH}

func (o *outbound) state() (eg *boxEgress, internet bool, err error) {
	o.rt.mu.Lock()
	defer o.rt.mu.Unlock()
	if o.c.exit != nil {
		return nil, false, errKilled
	}
	return o.c.egress, o.c.internet, nil
}

func (o *outbound) lookup(ctx context.Context, host string) ([]string, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []string{ip.String()}, nil
	}
	eg, internet, err := o.state()
	switch {
	case err != nil:
		return nil, err
	case eg != nil && !internet:
		return []string{intercept.FakeIP.String()}, nil
	case internet:
		return net.DefaultResolver.LookupHost(ctx, host)
	}
	return nil, &net.DNSError{Err: "no route to a DNS server", Name: host, IsTemporary: true}
}

func (o *outbound) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("dial %s %s: the fake runtime has TCP only", network, addr)
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: bad port", addr)
	}
	addrs, err := o.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(addrs[0])
	if err != nil {
		return nil, err
	}
	dst := netip.AddrPortFrom(ip.Unmap(), uint16(port))
	if ip.IsLoopback() {
		return o.dialOwnPort(ctx, int(port))
	}
	eg, internet, err := o.state()
	if err != nil {
		return nil, err
	}
	if eg != nil && (!internet || eg.table.Captured(dst)) {
		client, server, err := socketPair()
		if err != nil {
			return nil, err
		}
		go eg.srv.ServeConn(server, dst)
		return client, nil
	}
	if !internet {
		return nil, errNoRoute
	}
	var d net.Dialer
	return d.DialContext(ctx, network, dst.String())
}

// dialOwnPort connects to a port the container itself listens on.
func (o *outbound) dialOwnPort(ctx context.Context, port int) (net.Conn, error) {
	o.rt.mu.Lock()
	pl := o.c.ports[port]
	o.rt.mu.Unlock()
	if pl == nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", pl.Listener.Addr().String())
}

func (o *outbound) readFile(path string) ([]byte, error) {
	eg, _, err := o.state()
	if err != nil {
		return nil, err
	}
	if path == container.EgressCAPath && eg != nil {
		ca, err := o.rt.egressCA()
		if err != nil {
			return nil, err
		}
		return ca.PEM(), nil
	}
	return nil, &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
}

// socketPair returns the two ends of a connected stream socket pair, which
// (unlike net.Pipe) buffers like a network connection.
func socketPair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "egress")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			if i == 1 {
				conns[0].Close()
			}
			return nil, nil, err
		}
		conns[i] = c
	}
	return conns[0], conns[1], nil
}

// System methods of a program's outbound traffic.

var errNoOutbound = errors.New("no outbound network here in the fake runtime")

func (s *system) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.outbound == nil {
		return nil, errNoOutbound
	}
	return s.outbound.dial(ctx, network, addr)
}

func (s *system) LookupHost(ctx context.Context, host string) ([]string, error) {
	if s.outbound == nil {
		return nil, errNoOutbound
	}
	return s.outbound.lookup(ctx, host)
}

func (s *system) ReadFile(path string) ([]byte, error) {
	if s.outbound == nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
	}
	return s.outbound.readFile(path)
}
