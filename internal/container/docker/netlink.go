package docker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Two routing changes interception makes in a container's namespace, as
// rtnetlink requests from the calling thread (which must be switched into
// the namespace): `ip addr replace A/32 dev lo` and `ip route replace
// default dev lo src A`. Doing them here, not with the host's ip, saves two
// process starts at every container start.

// loIndex is the interface index of lo, which is 1 in every network
// namespace.
const loIndex = 1

// routeDefaultViaLoopback gives lo the address a and makes lo the default
// route with source a.
func routeDefaultViaLoopback(a netip.Addr) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	ip := a.As4()
	const flags = unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_CREATE | unix.NLM_F_REPLACE

	addr := make([]byte, unix.SizeofIfAddrmsg)
	addr[0], addr[1] = unix.AF_INET, 32 // family, prefix length; scope universe
	binary.NativeEndian.PutUint32(addr[4:], loIndex)
	addr = appendAttr(addr, unix.IFA_LOCAL, ip[:])
	addr = appendAttr(addr, unix.IFA_ADDRESS, ip[:])
	if err := netlinkDo(fd, 1, unix.RTM_NEWADDR, flags, addr); err != nil {
		return fmt.Errorf("add %s to lo: %w", a, err)
	}

	route := make([]byte, unix.SizeofRtMsg)
	route[0] = unix.AF_INET // destination and source lengths 0: default
	route[4], route[5], route[6], route[7] = unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_LINK, unix.RTN_UNICAST
	oif := binary.NativeEndian.AppendUint32(nil, loIndex)
	route = appendAttr(route, unix.RTA_OIF, oif)
	route = appendAttr(route, unix.RTA_PREFSRC, ip[:])
	if err := netlinkDo(fd, 2, unix.RTM_NEWROUTE, flags, route); err != nil {
		return fmt.Errorf("default route via lo: %w", err)
	}
	return nil
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// netlinkDo sends one request and reads its acknowledgement.
func netlinkDo(fd int, seq uint32, typ, flags uint16, body []byte) error {
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return errors.New("malformed netlink answer")
			}
			if binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_ERROR && binary.NativeEndian.Uint32(b[8:]) == seq {
				if l < unix.SizeofNlMsghdr+4 {
					return errors.New("malformed netlink error")
				}
				if code := int32(binary.NativeEndian.Uint32(b[unix.SizeofNlMsghdr:])); code != 0 {
					return syscall.Errno(-code)
				}
				return nil
			}
			b = b[(l+3)&^3:]
		}
	}
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
