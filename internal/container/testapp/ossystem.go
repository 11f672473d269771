package testapp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// OSSystem returns the System of the running process. It starts catching
// signals at once, so call it before anything could signal the process.
func OSSystem() System {
	s := &osSystem{signals: make(chan os.Signal, 16)}
	signal.Notify(s.signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGWINCH)
	return s
}

type osSystem struct {
	signals chan os.Signal

	mu sync.Mutex
	// kept holds what Alloc allocated so that the garbage collector cannot
	// give it back.
	kept [][]byte
}

func (s *osSystem) Args() []string    { return os.Args }
func (s *osSystem) Environ() []string { return os.Environ() }
func (s *osSystem) Stdin() io.Reader  { return os.Stdin }
func (s *osSystem) Stdout() io.Writer { return os.Stdout }
func (s *osSystem) Stderr() io.Writer { return os.Stderr }
func (s *osSystem) Listen(network, addr string) (net.Listener, error) {
	return net.Listen(network, addr)
}
func (s *osSystem) Signals() <-chan os.Signal { return s.signals }
func (s *osSystem) Hostname() (string, error) { return os.Hostname() }
func (s *osSystem) Getwd() (string, error)    { return os.Getwd() }
func (s *osSystem) Getuid() int               { return os.Getuid() }
func (s *osSystem) Getpid() int               { return os.Getpid() }

func (s *osSystem) Alloc(mib int) error {
	const pageSize = 4096
	for range mib {
		b := make([]byte, 1<<20)
		// Writing one byte per page makes the kernel back it with memory;
		// an untouched allocation would not count against a cgroup limit.
		for i := 0; i < len(b); i += pageSize {
			b[i] = 1
		}
		s.mu.Lock()
		s.kept = append(s.kept, b)
		s.mu.Unlock()
	}
	return nil
}

func (s *osSystem) Network() (Network, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return Network{}, fmt.Errorf("list interfaces: %w", err)
	}
	var n Network
	for _, iface := range ifaces {
		n.Interfaces = append(n.Interfaces, iface.Name)
	}
	n.DefaultRoute, err = hasDefaultRoute("/proc/net/route")
	return n, err
}

// hasDefaultRoute reads the kernel's IPv4 routing table: a default route is
// an up route (flag RTF_UP, 0x1) to destination 0.0.0.0.
func hasDefaultRoute(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("read routes: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		var flags uint64
		fmt.Sscanf(fields[3], "%x", &flags)
		if fields[1] == "00000000" && flags&0x1 != 0 {
			return true, nil
		}
	}
	return false, sc.Err()
}

func (s *osSystem) Terminal() Terminal {
	ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return Terminal{}
	}
	return Terminal{TTY: true, Cols: int(ws.Col), Rows: int(ws.Row)}
}
