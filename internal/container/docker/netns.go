package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// hostNetns is berth's own network namespace, opened while every thread is
// still in it; dials switch back to it.
var (
	hostNetns     *os.File
	hostNetnsErr  error
	hostNetnsOnce sync.Once
)

func openHostNetns() error {
	hostNetnsOnce.Do(func() {
		hostNetns, hostNetnsErr = os.Open("/proc/self/ns/net")
		if hostNetnsErr != nil {
			hostNetnsErr = fmt.Errorf("open host network namespace: %w", hostNetnsErr)
		}
	})
	return hostNetnsErr
}

// netnsHandle is an open network namespace of one running container. The
// open file pins the namespace, so it is closed as soon as the container
// exits.
type netnsHandle struct {
	path string // the SandboxKey it was opened from
	f    *os.File
}

// netnsCache keeps one handle per running container.
type netnsCache struct {
	mu      sync.Mutex
	handles map[string]*netnsHandle
}

func newNetnsCache() *netnsCache {
	return &netnsCache{handles: make(map[string]*netnsHandle)}
}

func (c *netnsCache) get(id string) *netnsHandle {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.handles[id]
}

// open returns the cached handle for id if it was opened from path, else
// opens path and caches it in place of any stale handle.
func (c *netnsCache) open(id, path string) (*netnsHandle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.handles[id]; h != nil {
		if h.path == path {
			return h, nil
		}
		h.f.Close()
		delete(c.handles, id)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	h := &netnsHandle{path: path, f: f}
	c.handles[id] = h
	return h, nil
}

// drop closes id's handle. A dial that holds it fails cleanly: the file's
// own reference counting keeps the descriptor valid during a setns already
// under way, and later ones see it closed.
func (c *netnsCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.handles[id]; h != nil {
		h.f.Close()
		delete(c.handles, id)
	}
}

func (c *netnsCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, h := range c.handles {
		h.f.Close()
		delete(c.handles, id)
	}
}

func (c *netnsCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.handles)
}

// errNetnsClosed means the handle was dropped while a dial was starting.
var errNetnsClosed = errors.New("network namespace handle closed")

// dialLoopback connects to 127.0.0.1:port inside the namespace.
func (h *netnsHandle) dialLoopback(ctx context.Context, port int) (net.Conn, error) {
	return dialInNetns(ctx, h.f, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil)
}

// dialInNetns connects to addr from inside the network namespace ns. Only
// the socket is created inside: the Dialer's Control hook, which runs after
// socket() and before connect(), switches the thread back, so the goroutine
// never parks while its thread sits in the container's namespace. A socket
// keeps the namespace it was created in. setup, when set, is applied to the
// socket in that hook.
func dialInNetns(ctx context.Context, ns *os.File, network, addr string, setup func(fd uintptr) error) (net.Conn, error) {
	raw, err := ns.SyscallConn()
	if err != nil {
		return nil, errNetnsClosed
	}
	runtime.LockOSThread()
	var setnsErr error
	// Control holds a reference on the descriptor, so a concurrent drop
	// cannot close it (and let the number be reused) mid-setns.
	if err := raw.Control(func(fd uintptr) { setnsErr = unix.Setns(int(fd), unix.CLONE_NEWNET) }); err != nil {
		runtime.UnlockOSThread()
		return nil, errNetnsClosed
	}
	if setnsErr != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter container network namespace: %w", setnsErr)
	}
	inside := true
	leave := func() error {
		if !inside {
			return nil
		}
		if err := unix.Setns(int(hostNetns.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the Go runtime ends a locked thread
			// when its goroutine exits, so no other goroutine runs in the
			// container's namespace.
			return fmt.Errorf("return to host network namespace: %w", err)
		}
		inside = false
		runtime.UnlockOSThread()
		return nil
	}
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var setupErr error
		if setup != nil {
			if err := c.Control(func(fd uintptr) { setupErr = setup(fd) }); err != nil {
				setupErr = err
			}
		}
		if err := leave(); err != nil {
			return err
		}
		return setupErr
	}}
	conn, err := d.DialContext(ctx, network, addr)
	if lerr := leave(); lerr != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, lerr
	}
	return conn, err
}
