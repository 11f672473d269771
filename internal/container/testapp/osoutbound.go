package testapp

import (
	"context"
	"net"
	"os"
)

func (s *osSystem) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (s *osSystem) LookupHost(ctx context.Context, host string) ([]string, error) {
	return net.DefaultResolver.LookupHost(ctx, host)
}

func (s *osSystem) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }
