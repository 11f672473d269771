package testapp

import (
	"context"
	"io"
	"net"
	"os"
)

// System is everything Main needs from the operating system. OSSystem gives
// the real one; container/fake gives one backed by its in-memory containers,
// so that the same program logic runs under both runtimes.
type System interface {
	// Args is the command line including the program name, like os.Args.
	Args() []string
	// Environ is the environment as KEY=value strings, like os.Environ.
	Environ() []string
	Stdin() io.Reader
	Stdout() io.Writer
	Stderr() io.Writer
	// Listen is net.Listen; addr is what the program asks for (":8080").
	Listen(network, addr string) (net.Listener, error)
	// Signals delivers SIGTERM, SIGINT, SIGHUP and SIGWINCH sent to the
	// process. It is the same channel on every call.
	Signals() <-chan os.Signal
	// Alloc allocates mib MiB, touches every page and keeps it for the
	// life of the process. Exceeding a memory limit may kill the process,
	// in which case Alloc does not return successfully.
	Alloc(mib int) error
	// Network reports the network interfaces and whether a default route
	// exists. It must not make any connection.
	Network() (Network, error)
	// Terminal reports whether stdin is a terminal and its size.
	Terminal() Terminal
	Hostname() (string, error)
	Getwd() (string, error)
	Getuid() int
	// Getpid is the process's id, as the process sees it.
	Getpid() int
	// DialContext opens an outbound connection from inside the container,
	// as net.Dialer.DialContext does: a name is resolved as the container
	// resolves names.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	// LookupHost resolves host as the container does (its DNS).
	LookupHost(ctx context.Context, host string) ([]string, error)
	// ReadFile reads a file of the container (a CA certificate, say).
	ReadFile(path string) ([]byte, error)
}

// Network is what the /net endpoint reports.
type Network struct {
	Interfaces   []string `json:"interfaces"`
	DefaultRoute bool     `json:"default_route"`
}

// Terminal is the state of the process's terminal.
type Terminal struct {
	TTY  bool
	Cols int
	Rows int
}
