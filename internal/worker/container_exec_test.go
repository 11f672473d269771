package worker

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// execSrc drives ctx.container.exec() processes: their pid, resize() of
// one with a terminal, and the exit code of one whose output nobody reads.
const execSrc = `
import { DurableObject } from "cloudflare:workers";
const dec = new TextDecoder(), enc = new TextEncoder();
// readUntil reads r until the text seen so far contains want.
async function readUntil(r, seen, want) {
  while (!seen.text.includes(want)) {
    const { done, value } = await r.read();
    if (done) throw new Error("output ended before " + JSON.stringify(want) + ": " + JSON.stringify(seen.text));
    seen.text += dec.decode(value, { stream: true });
  }
}
const errorName = (fn) => { try { fn(); return "none"; } catch (e) { return e.constructor.name + ": " + e.message; } };
export class Box extends DurableObject {
  async fetch(req) {
    const c = this.ctx.container;
    if (!c.running) c.start();
    switch (new URL(req.url).pathname) {
      case "/pid": {
        // testapp pid prints its pid and runs until stdin ends.
        const p = await c.exec(["/testapp", "pid"], { stdin: "pipe" });
        const seen = { text: "" };
        await readUntil(p.stdout.getReader(), seen, "\n");
        const resize = errorName(() => p.resize(80, 24));
        await p.stdin.getWriter().close();
        return Response.json({ pid: p.pid, printed: seen.text.trim(), code: await p.exitCode, isPty: p.isPty, resize });
      }
      case "/tty": {
        // With a PTY, stdin is a pipe and stderr is combined by default.
        const p = await c.exec(["/testapp", "tty"], { pty: { cols: 80, rows: 24 } });
        const r = p.stdout.getReader(), seen = { text: "" };
        await readUntil(r, seen, "tty=true cols=80 rows=24");
        p.resize(132, 43);
        await readUntil(r, seen, "tty=true cols=132 rows=43");
        p.resize({ cols: 100, rows: 30 });
        await readUntil(r, seen, "tty=true cols=100 rows=30");
        const bad = [[0, 24], [80, 65536], [NaN, 10]].map((a) => errorName(() => p.resize(...a)));
        let separateStderr = "none";
        await c.exec(["/testapp", "tty"], { pty: true, stderr: "pipe" }).catch((e) => { separateStderr = e.constructor.name + ": " + e.message; });
        const w = p.stdin.getWriter();
        await w.write(enc.encode("done\n"));
        await w.close();
        return Response.json({ pid: p.pid, isPty: p.isPty, stdin: p.stdin !== null, stderr: p.stderr, bad, separateStderr, code: await p.exitCode });
      }
      case "/unread": {
        const p = await c.exec(["/testapp", "echo", "nobody", "reads", "this"]);
        return new Response(String(await p.exitCode));
      }
    }
    return new Response("no route", { status: 404 });
  }
}
export default { fetch(req, env) { return env.BOX.getByName("a").fetch(req); } };
`

func TestContainerExecPIDAndResize(t *testing.T) {
	m := fakeContainers(t, "Box")
	w := newObjectWorker(t, execSrc, map[string]string{"BOX": "Box"}, objectOptions{containers: m, containerClasses: []string{"Box"}})

	var p struct {
		PID     int
		Printed string
		Code    int
		IsPty   bool
		Resize  string
	}
	getJSON(t, w, "http://x/pid", &p)
	if p.PID <= 1 || p.Printed != fmt.Sprintf("pid=%d", p.PID) || p.Code != 0 {
		t.Errorf("pid = %d, the process printed %q (exit %d); want its own pid, above the main process's", p.PID, p.Printed, p.Code)
	}
	if p.IsPty || p.Resize != "TypeError: resize() can only be called on a process that was started with a PTY." {
		t.Errorf("without a PTY: isPty %v, resize() threw %q", p.IsPty, p.Resize)
	}

	var tty struct {
		PID            int
		IsPty, Stdin   bool
		Stderr         *string
		Bad            []string
		SeparateStderr string
		Code           int
	}
	getJSON(t, w, "http://x/tty", &tty)
	if tty.PID <= p.PID || !tty.IsPty || !tty.Stdin || tty.Stderr != nil || tty.Code != 0 {
		t.Errorf("tty process: %+v; want a later pid, isPty, a stdin pipe, stderr combined (null) and exit 0", tty)
	}
	for i, got := range tty.Bad {
		if !strings.HasPrefix(got, "RangeError: PTY ") {
			t.Errorf("resize with bad size %d threw %q, want a RangeError", i, got)
		}
	}
	if tty.SeparateStderr != `TypeError: stderr must be "combined" when PTY is enabled.` {
		t.Errorf("exec with a PTY and stderr pipe: %q", tty.SeparateStderr)
	}

	// A little output waits for the script; the exit code does not.
	done := make(chan string, 1)
	go func() { done <- do(t, w, "GET", "http://x/unread", nil).Body.String() }()
	select {
	case got := <-done:
		if got != "0" {
			t.Errorf("exitCode with the output unread = %q, want 0", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exitCode did not settle while the process's output was unread")
	}
}
