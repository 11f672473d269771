package worker

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// patternReader yields n bytes of a repeating pattern without holding them.
type patternReader struct{ left int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	for i := range b {
		b[i] = byte(i * 7)
	}
	p.left -= int64(len(b))
	return len(b), nil
}

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// peakMemory samples the Go heap and the process RSS until stop is closed.
func peakMemory(stop <-chan struct{}) (heap, rss func() int64) {
	var maxHeap, maxRSS atomic.Int64
	go func() {
		var ms goruntime.MemStats
		for {
			goruntime.ReadMemStats(&ms)
			if h := int64(ms.HeapInuse); h > maxHeap.Load() {
				maxHeap.Store(h)
			}
			if r := rssBytes(); r > maxRSS.Load() {
				maxRSS.Store(r)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return maxHeap.Load, maxRSS.Load
}

func TestPassThroughStreamsLargeBodies(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 16 << 20
	}
	// The upstream hashes what it receives and answers with a body of the
	// same size, generated as it is sent.
	var gotSum string
	var gotLen int64
	upstream := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(rw, err.Error(), 500)
			return
		}
		gotLen, gotSum = n, hex.EncodeToString(h.Sum(nil))
		rw.Header().Set("X-Upstream", "yes")
		io.Copy(rw, &patternReader{left: n})
	}))
	defer upstream.Close()

	w, logs := newWorker(t, `
export default {
  async fetch(request: Request, env: { UPSTREAM: string }) {
    const u = new URL(request.url);
    return fetch(new Request(env.UPSTREAM + u.pathname, request));
  },
};`, Config{Vars: map[string]any{"UPSTREAM": upstream.URL}})
	front := httptest.NewServer(w)
	defer front.Close()

	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	heap0, rss0 := int64(ms.HeapInuse), rssBytes()
	stop := make(chan struct{})
	maxHeap, maxRSS := peakMemory(stop)

	want := sha256.New()
	body := io.TeeReader(&patternReader{left: size}, want)
	req, _ := http.NewRequest("POST", front.URL+"/upload", body)
	req.ContentLength = size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	respSum := sha256.New()
	n, err := io.Copy(respSum, resp.Body)
	resp.Body.Close()
	close(stop)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("response: %d %v %v\n%s", resp.StatusCode, err, resp.Header, logs.String())
	}
	if gotLen != size || gotSum != hex.EncodeToString(want.Sum(nil)) {
		t.Errorf("upstream got %d bytes (sum %s), want %d", gotLen, gotSum, size)
	}
	wantResp := sha256.New()
	io.Copy(wantResp, &patternReader{left: size})
	if n != size || hex.EncodeToString(respSum.Sum(nil)) != hex.EncodeToString(wantResp.Sum(nil)) {
		t.Errorf("client got %d bytes, want %d of the pattern", n, size)
	}
	heapGrowth, rssGrowth := maxHeap()-heap0, maxRSS()-rss0
	t.Logf("passed %d MiB each way; peak growth: Go heap %.1f MiB, RSS %.1f MiB", size>>20, float64(heapGrowth)/(1<<20), float64(rssGrowth)/(1<<20))
	if heapGrowth > 32<<20 || rssGrowth > 64<<20 {
		t.Errorf("memory grew with the body: heap +%d MiB, RSS +%d MiB", heapGrowth>>20, rssGrowth>>20)
	}
}

func TestFetchWithStreamingRequestBody(t *testing.T) {
	var mu sync.Mutex
	var got string
	upstream := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = string(b)
		mu.Unlock()
		fmt.Fprintf(rw, "len=%d te=%v", len(b), r.TransferEncoding)
	}))
	defer upstream.Close()
	w, _ := newWorker(t, `
export default {
  async fetch(request: Request, env: { UPSTREAM: string }) {
    const { readable, writable } = new TransformStream();
    const writer = writable.getWriter();
    (async () => {
      for (let i = 0; i < 100; i++) await writer.write(new TextEncoder().encode("chunk" + i + ";"));
      await writer.close();
    })();
    const r = await fetch(env.UPSTREAM, { method: "POST", body: readable });
    return new Response(await r.text());
  },
};`, Config{Vars: map[string]any{"UPSTREAM": upstream.URL}})
	rec := do(t, w, "GET", "http://x/", nil)
	var want strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&want, "chunk%d;", i)
	}
	if rec.Body.String() != fmt.Sprintf("len=%d te=[chunked]", want.Len()) {
		t.Errorf("worker answered %q", rec.Body.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if got != want.String() {
		t.Errorf("upstream got %q", got)
	}
}

// A Worker that answers before the client has sent all of the request body
// (full duplex) leaves the rest to the runtime, which closes the body when
// the request ends. net/http allows no use of a body once its handler has
// returned: the server must not break (it used to panic with "invalid
// concurrent Body.Read call" when the client sent the rest late), and the
// connection is then either reused or closed cleanly.
func TestLateRequestBodyAfterResponse(t *testing.T) {
	w, _ := newWorker(t, `export default { fetch(req) { return new Response("early", { status: 400 }); } };`, Config{})
	srv := httptest.NewUnstartedServer(w)
	var serverLog testutil.SyncBuffer
	srv.Config.ErrorLog = log.New(&serverLog, "", 0)
	srv.Start()
	defer srv.Close()
	for i := range 20 {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		fmt.Fprintf(conn, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nfirst")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(5 * time.Millisecond) // the runtime is done with the request by now
		fmt.Fprintf(conn, "_rest")       // the body's last bytes, late
		fmt.Fprintf(conn, "GET /y HTTP/1.1\r\nHost: h\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if resp, err := http.ReadResponse(br, nil); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		conn.Close()
	}
	if strings.Contains(serverLog.String(), "panic") {
		t.Fatalf("the server panicked:\n%s", serverLog.String())
	}
}

// A keep-alive connection carries request after request whose bodies the
// Worker leaves unread (the runtime closes them when the request ends) or
// reads: none may break the connection (net/http allows no use of a body
// once its handler has returned).
func TestUnreadRequestBodiesOnKeepAlive(t *testing.T) {
	w, _ := newWorker(t, `export default { async fetch(req) {
  if (new URL(req.url).pathname === "/read") return new Response(await req.text());
  return new Response("ignored", { status: 400 });
} };`, Config{})
	srv := httptest.NewServer(w)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for i := range 300 {
		path := "/ignore"
		if i%3 == 0 {
			path = "/read"
		}
		resp, err := client.Post(srv.URL+path, "text/plain", strings.NewReader(fmt.Sprintf("body %d", i)))
		if err != nil {
			t.Fatalf("request %d to %s: %v", i, path, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d: read: %v", i, err)
		}
		if path == "/read" && string(got) != fmt.Sprintf("body %d", i) {
			t.Fatalf("request %d: echoed %q", i, got)
		}
	}
}
