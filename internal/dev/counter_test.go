package dev

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// copyExample copies examples/<name> to a temp dir (without node_modules
// and state) and returns it.
func copyExample(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "..", "examples", name)
	if err := testutil.CopyTree(src, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func call(t *testing.T, method, url string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, url, err, b)
		}
	}
	return resp.StatusCode
}

type counterValue struct {
	Value int `json:"value"`
}

type change struct {
	Delta  int    `json:"delta"`
	Value  int    `json:"value"`
	Reason string `json:"reason"`
}

// runDev starts a dev server that ends with the test or with stop.
func runDev(t *testing.T, opts Options) (url string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	ready := make(chan string, 1)
	opts.Out, opts.Port, opts.Ready = out, 0, func(u string) { ready <- u }
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("Run ended before ready: %v\n%s", err, out)
	case <-time.After(60 * time.Second):
		t.Fatalf("not ready after 60 s:\n%s", out)
	}
	return url, stop
}

// TestCounterExample drives examples/counter through berth dev: RPC, the
// object's fetch, SQL history, state across a restart and a reload, and an
// alarm set before a restart that fires after it.
func TestCounterExample(t *testing.T) {
	dir := copyExample(t, "counter")
	logs := &syncBuffer{}
	opts := Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil)), Watch: true}
	url, stop := runDev(t, opts)

	var v counterValue
	for i := 1; i <= 3; i++ {
		if code := call(t, "POST", url+"/a/increment?by="+fmt.Sprint(i), &v); code != 200 || v.Value != i*(i+1)/2 {
			t.Fatalf("increment %d: %d %+v\n%s", i, code, v, logs)
		}
	}
	call(t, "POST", url+"/b/increment?by=10", &v)
	if call(t, "GET", url+"/a", &v); v.Value != 6 {
		t.Fatalf("a = %d, want 6", v.Value)
	}
	var obj struct {
		ID, Name string
		Value    int
	}
	if code := call(t, "GET", url+"/a/object", &obj); code != 200 || obj.Name != "a" || len(obj.ID) != 64 || obj.Value != 6 {
		t.Fatalf("object fetch: %d %+v\n%s", code, obj, logs)
	}
	if code := call(t, "POST", url+"/a/increment?by=0.5", nil); code != 500 {
		t.Fatalf("a bad increment answered %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, ".berth", "state", "secret")); err != nil {
		t.Fatalf("state directory: %v", err)
	}

	// Restart: the state survives, ids too.
	stop()
	url, stop = runDev(t, opts)
	var obj2 = obj
	if call(t, "GET", url+"/a/object", &obj2); obj2.ID != obj.ID || obj2.Value != 6 {
		t.Fatalf("after restart: %+v, want id %s value 6", obj2, obj.ID)
	}
	var hist []change
	call(t, "GET", url+"/a/history", &hist)
	if len(hist) != 3 || hist[0].Value != 6 || hist[2].Value != 1 {
		t.Fatalf("history after restart: %+v", hist)
	}

	// Reload: the object runs the new code, its storage stays.
	src := filepath.Join(dir, "src", "index.ts")
	b, _ := os.ReadFile(src)
	os.WriteFile(src, []byte(strings.Replace(string(b), "path: url.pathname", "path: url.pathname, version: 2", 1)), 0o644)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got struct {
			Value   int
			Version int
		}
		call(t, "GET", url+"/a/object", &got)
		if got.Version == 2 {
			if got.Value != 6 {
				t.Fatalf("after reload value = %d, want 6", got.Value)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the object never ran the new code\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// An alarm set before a restart fires after it.
	var at struct{ At int64 }
	call(t, "POST", url+"/b/reset?in=1500", &at)
	stop()
	url, _ = runDev(t, opts)
	for {
		call(t, "GET", url+"/b", &v)
		if v.Value == 0 {
			break
		}
		if time.Now().After(time.UnixMilli(at.At).Add(20 * time.Second)) {
			t.Fatalf("the alarm did not fire after the restart: b = %d\n%s", v.Value, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if time.Now().Before(time.UnixMilli(at.At)) {
		t.Fatalf("the alarm fired early")
	}
	call(t, "GET", url+"/b/history", &hist)
	if len(hist) != 2 || hist[0].Reason != "alarm" || hist[0].Value != 0 {
		t.Fatalf("b history: %+v", hist)
	}
}

// TestDevProcess is not a test: TestCounterSurvivesSIGKILL runs the test
// binary with BERTH_DEV_PROCESS=<dir> to get a dev server in a child
// process, which prints its URL.
func TestDevProcess(t *testing.T) {
	dir := os.Getenv("BERTH_DEV_PROCESS")
	if dir == "" {
		t.Skip("helper process for TestCounterSurvivesSIGKILL")
	}
	err := Run(context.Background(), Options{Dir: dir, Port: 0, Ready: func(u string) { fmt.Println("URL " + u) },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Fatal(err)
}

func startDevProcess(t *testing.T, dir string) (url string, cmd *exec.Cmd) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^TestDevProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "BERTH_DEV_PROCESS="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "URL "); ok {
				lines <- u
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case url = <-lines:
	case <-time.After(60 * time.Second):
		t.Fatal("dev process not ready after 60 s")
	}
	return url, cmd
}

// TestCounterSurvivesSIGKILL: every increment acknowledged before berth dev
// is SIGKILLed is in the counter's storage after a restart, value and
// history row alike (the output gate commits before the response leaves).
func TestCounterSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := copyExample(t, "counter")
	url, cmd := startDevProcess(t, dir)

	var mu sync.Mutex
	acked := map[string][]int{}
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	names := []string{"k1", "k2", "k3", "k4"}
	for _, name := range names {
		wg.Go(func() {
			for {
				resp, err := client.Post(url+"/"+name+"/increment", "", nil)
				if err != nil {
					return // killed
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var v counterValue
				if resp.StatusCode != 200 || json.Unmarshal(b, &v) != nil {
					return
				}
				mu.Lock()
				acked[name] = append(acked[name], v.Value)
				mu.Unlock()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	_ = cmd.Wait()

	url, _ = startDevProcess(t, dir)
	total := 0
	for _, name := range names {
		got := acked[name]
		total += len(got)
		var v counterValue
		call(t, "GET", url+"/"+name, &v)
		last := 0
		if len(got) > 0 {
			last = got[len(got)-1]
		}
		// The value may be ahead of the last acknowledgement (a write
		// committed whose response was cut off), never behind.
		if v.Value < last {
			t.Errorf("%s = %d after SIGKILL, but %d was acknowledged", name, v.Value, last)
		}
		var hist []change
		call(t, "GET", url+"/"+name+"/history?limit=1000000", &hist)
		rows := map[int]bool{}
		for _, c := range hist {
			rows[c.Value] = true
		}
		if len(hist) != v.Value {
			t.Errorf("%s: %d history rows for value %d", name, len(hist), v.Value)
		}
		for _, n := range got {
			if !rows[n] {
				t.Errorf("%s: acknowledged value %d has no history row", name, n)
			}
		}
	}
	if total < 20 {
		t.Fatalf("only %d increments were acknowledged before the kill; the test proves little", total)
	}
	t.Logf("%d acknowledged increments survived SIGKILL", total)
}
