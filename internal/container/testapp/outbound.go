package testapp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FetchReply is what /fetch and /boot-fetch answer: the first response (or
// the error), and with n > 1 the latencies of the n requests.
type FetchReply struct {
	Status int                 `json:"status"`
	Header map[string][]string `json:"header,omitempty"`
	Body   string              `json:"body"`
	Err    string              `json:"err,omitempty"`
	N      int                 `json:"n"`
	// P50 and P99 are request latencies in microseconds.
	P50 float64 `json:"p50_us"`
	P99 float64 `json:"p99_us"`
}

// ResolveReply is what /resolve answers.
type ResolveReply struct {
	Addrs []string `json:"addrs"`
	Err   string   `json:"err,omitempty"`
}

type fetchOptions struct {
	url, method, body string
	n                 int
	fresh             bool // a new connection (and DNS lookup) per request
	insecure          bool // skip certificate verification
}

// outboundRoutes adds the endpoints that call out of the container; with
// $FETCH_AT_BOOT set it makes that request first.
func (p *program) outboundRoutes(ctx context.Context, mux *http.ServeMux) {
	var boot FetchReply
	if u := p.env["FETCH_AT_BOOT"]; u != "" {
		boot = p.fetch(ctx, fetchOptions{url: u, n: 1})
	}
	mux.Handle("/boot-fetch", handler(func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, boot)
	}))
	mux.Handle("/fetch", handler(func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("n"))
		return writeJSON(w, p.fetch(r.Context(), fetchOptions{
			url: q.Get("url"), method: q.Get("method"), body: q.Get("body"), n: max(n, 1),
			fresh: q.Get("fresh") == "1", insecure: q.Get("insecure") == "1",
		}))
	}))
	mux.Handle("/resolve", handler(func(w http.ResponseWriter, r *http.Request) error {
		addrs, err := p.sys.LookupHost(r.Context(), r.URL.Query().Get("host"))
		reply := ResolveReply{Addrs: addrs}
		if err != nil {
			reply.Err = err.Error()
		}
		return writeJSON(w, reply)
	}))
}

// fetch makes o.n requests from inside the container. It trusts the CAs in
// $SSL_CERT_FILE when that is set, as Go's own system pool would.
func (p *program) fetch(ctx context.Context, o fetchOptions) FetchReply {
	tr := &http.Transport{DialContext: p.sys.DialContext, DisableKeepAlives: o.fresh, TLSClientConfig: &tls.Config{}}
	defer tr.CloseIdleConnections()
	if f := p.env["SSL_CERT_FILE"]; f != "" {
		if pem, err := p.sys.ReadFile(f); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			tr.TLSClientConfig.RootCAs = pool
		}
	}
	tr.TLSClientConfig.InsecureSkipVerify = o.insecure
	client := &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	method := o.method
	if method == "" {
		method = http.MethodGet
	}
	reply := FetchReply{N: o.n}
	var took []time.Duration
	for i := range o.n {
		var body io.Reader
		if o.body != "" {
			body = strings.NewReader(o.body)
		}
		req, err := http.NewRequestWithContext(ctx, method, o.url, body)
		if err != nil {
			reply.Err = err.Error()
			return reply
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			reply.Err = err.Error()
			return reply
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took = append(took, time.Since(start))
		if i == 0 {
			reply.Status, reply.Header, reply.Body = resp.StatusCode, resp.Header, string(b)
			if err != nil {
				reply.Err = err.Error()
			}
		}
	}
	slices.Sort(took)
	pct := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))].Nanoseconds()) / 1e3 }
	reply.P50, reply.P99 = pct(0.5), pct(0.99)
	return reply
}
