package docker

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
)

// BenchmarkColdStart measures, against the real engine, how long berth
// takes from Start until the container's port answers HTTP through Dial,
// beside `docker run -d -p 127.0.0.1::8080` of the same image polled on the
// published port, interleaved so that both see the same load. ns/op is
// berth's median; berth-ms, dockerrun-ms and berth/dockerrun are medians
// over b.N runs each (make bench runs 10).
func BenchmarkColdStart(b *testing.B) {
	if _, err := exec.LookPath("docker"); err != nil {
		b.Fatalf("the baseline needs the docker CLI: %v", err)
	}
	rt := newTestRuntime(b, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	image := testAppImage(b, rt)
	var berth, cli []time.Duration
	for i := 0; i < b.N; i++ {
		d, err := berthColdStart(ctx, rt, image)
		if err != nil {
			b.Fatalf("berth run %d: %v", i, err)
		}
		berth = append(berth, d)
		d, err = cliColdStart(ctx, rt, image)
		if err != nil {
			b.Fatalf("docker run %d: %v", i, err)
		}
		cli = append(cli, d)
	}
	mb, mc := median(berth), median(cli)
	b.ReportMetric(float64(mb.Nanoseconds()), "ns/op")
	b.ReportMetric(ms(mb), "berth-ms")
	b.ReportMetric(ms(mc), "dockerrun-ms")
	b.ReportMetric(float64(mb)/float64(mc), "berth/dockerrun")
	b.Logf("n=%d: berth Start → first 200 via Dial: %s; docker run -p → first 200: %s; ratio %.2f",
		b.N, summary(berth), summary(cli), float64(mb)/float64(mc))
}

// BenchmarkWakeUnpause measures pause, then unpause until the port answers
// through Dial again; ns/op and wake-ms are the median of the unpause →
// first 200 time.
func BenchmarkWakeUnpause(b *testing.B) {
	rt := newTestRuntime(b, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inst := startApp(b, rt, container.Spec{Image: testAppImage(b, rt)})
	if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
		b.Fatal(err)
	}
	var wake []time.Duration
	for i := 0; i < b.N; i++ {
		if err := rt.Pause(ctx, inst.ID); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := rt.Unpause(ctx, inst.ID); err != nil {
			b.Fatal(err)
		}
		if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
			b.Fatal(err)
		}
		wake = append(wake, time.Since(start))
	}
	b.ReportMetric(float64(median(wake).Nanoseconds()), "ns/op")
	b.ReportMetric(ms(median(wake)), "wake-ms")
	b.Logf("n=%d: pause → unpause → first 200 via Dial: %s", b.N, summary(wake))
}

func berthColdStart(ctx context.Context, rt *Runtime, image string) (time.Duration, error) {
	start := time.Now()
	inst, err := rt.Start(ctx, container.Spec{Image: image, Labels: testLabels})
	if err != nil {
		return 0, err
	}
	defer rt.Destroy(context.WithoutCancel(ctx), inst.ID)
	if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func cliColdStart(ctx context.Context, rt *Runtime, image string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.CommandContext(ctx, "docker", "run", "-d", "--label", container.LabelTest+"=1",
		"-p", "127.0.0.1::8080", image).Output()
	if err != nil {
		return 0, fmt.Errorf("docker run: %w", err)
	}
	id := strings.TrimSpace(string(out))
	defer rt.api.ContainerRemove(context.WithoutCancel(ctx), id, client.ContainerRemoveOptions{Force: true})
	res, err := rt.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return 0, err
	}
	bindings := res.Container.NetworkSettings.Ports[network.MustParsePort("8080/tcp")]
	if len(bindings) == 0 {
		return 0, fmt.Errorf("8080/tcp not published: %v", res.Container.NetworkSettings.Ports)
	}
	url := "http://127.0.0.1:" + bindings[0].HostPort + "/echo"
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// BenchmarkDial is the cost of one connection into a container's namespace
// (setns, socket, setns back, connect) with the handle cached.
func BenchmarkDial(b *testing.B) {
	rt := newTestRuntime(b, Options{})
	ctx := context.Background()
	inst := startApp(b, rt, container.Spec{})
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := waitHTTP(wctx, rt, inst.ID, 8080, "/echo"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c, err := rt.Dial(ctx, inst.ID, 8080)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summary(ds []time.Duration) string {
	return fmt.Sprintf("median %.1f ms (min %.1f, max %.1f)", ms(median(ds)), ms(slices.Min(ds)), ms(slices.Max(ds)))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
