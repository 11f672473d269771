package docker

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The two routing changes interception makes in a container's namespace,
// as rtnetlink requests (github.com/vishvananda/netlink) from the calling
// thread, which must be switched into the namespace: `ip addr replace A/32
// dev lo` and `ip route replace default dev lo src A`. Doing them here, not
// with the host's ip, saves two process starts at every container start.

// routeDefaultViaLoopback gives lo the address a and makes lo the default
// route with source a. Without a /32 of its own on lo the kernel would pick
// source 0.0.0.0 (127.0.0.1 is host-scoped) and redirected handshakes
// would never complete.
func routeDefaultViaLoopback(a netip.Addr) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	ip := net.IP(a.AsSlice())
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrReplace(lo, addr); err != nil {
		return fmt.Errorf("add %s to lo: %w", a, err)
	}
	route := &netlink.Route{LinkIndex: lo.Attrs().Index, Scope: netlink.SCOPE_LINK, Src: ip, Table: unix.RT_TABLE_MAIN}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("default route via lo: %w", err)
	}
	return nil
}

// sameNetns reports whether the namespace at path (a /proc link) is ns.
func sameNetns(path string, ns *os.File) (bool, error) {
	a, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	b, err := ns.Stat()
	if err != nil {
		return false, err
	}
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Ino == sb.Ino && sa.Dev == sb.Dev, nil
}
