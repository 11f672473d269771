package testutil

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
)

// GetOverConn sends GET path over conn (a connection into a container) as
// HTTP/1.1 with Connection: close, and returns the status and the body.
// ctx's deadline, if any, bounds the exchange.
func GetOverConn(ctx context.Context, conn net.Conn, path string) (int, string, error) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://container"+path, nil)
	req.Close = true
	if err := req.Write(conn); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}
