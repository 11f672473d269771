package worker

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pathSrc serves the hops of the Worker → object → container path one at a
// time, so that a benchmark can tell what each adds.
const pathSrc = `
import { DurableObject, Container, getContainer } from "cloudflare:workers";
export class Plain extends DurableObject {
  fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/object") return new Response("ok");
    const c = this.ctx.container;
    if (!c.running) c.start();
    return c.getTcpPort(8080).fetch("http://container/sleep?d=0s", req);
  }
}
export class Box extends Container {
  defaultPort = 8080;
}
export default {
  fetch(req, env) {
    const url = new URL(req.url);
    switch (url.pathname) {
      case "/worker": return new Response("ok");
      case "/object": return env.PLAIN.getByName("p").fetch(req);
      case "/port": return env.PLAIN.getByName("p").fetch(req);
      case "/sleep": return getContainer(env.BOX, "b").fetch(req);
    }
    return new Response("no route", { status: 404 });
  },
};
`

// BenchmarkContainerPath times one request at a time through each hop, on
// the in-memory container runtime: the Worker alone, Worker → object,
// Worker → object → getTcpPort().fetch, and Worker → the Container class
// (cloudflare:workers) → container.
func BenchmarkContainerPath(b *testing.B) {
	m := fakeContainersTB(b, "Plain", "Box")
	w := newObjectWorker(b, pathSrc, map[string]string{"PLAIN": "Plain", "BOX": "Box"},
		objectOptions{containers: m, containerClasses: []string{"Plain", "Box"}})
	for _, path := range []string{"/worker", "/object", "/port", "/sleep?d=0s"} {
		b.Run(strings.TrimPrefix(strings.SplitN(path, "?", 2)[0], "/"), func(b *testing.B) {
			// Warm up: activation, the container's start, and until its
			// program listens (Plain fetches right after start()).
			deadline := time.Now().Add(10 * time.Second)
			for do(b, w, "GET", "http://x"+path, nil).Code != 200 {
				if time.Now().After(deadline) {
					b.Fatalf("GET %s: no 200 within 10 s\n%s", path, w.logs)
				}
			}
			b.ResetTimer()
			cpu := processCPU()
			for range b.N {
				if rec := do(b, w, "GET", "http://x"+path, nil); rec.Code != 200 {
					b.Fatalf("GET %s: %d %s\n%s", path, rec.Code, rec.Body, w.logs)
				}
			}
			// CPU time is steadier than wall time on a shared machine.
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
