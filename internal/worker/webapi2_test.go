package worker

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWebAPIs(t *testing.T) {
	w, logs := newWorker(t, evalWorker, Config{})
	cases := []struct{ name, src, want string }{
		{"TextEncoder", `return Array.from(new TextEncoder().encode("é€😀")).join(",")`, "195,169,226,130,172,240,159,152,128"},
		{"TextEncoder lone surrogate", `return Array.from(new TextEncoder().encode("\ud800")).join(",")`, "239,191,189"},
		{"TextDecoder replacement", `return new TextDecoder().decode(new Uint8Array([0x61, 0xf0, 0x9f, 0x98, 0x62, 0xff]))`, "a\ufffdb\ufffd"},
		{"TextDecoder fatal", `try { new TextDecoder("utf-8", {fatal: true}).decode(new Uint8Array([0xff])); return "no" } catch (e) { return e.name }`, "TypeError"},
		{"TextDecoder streaming", `const d = new TextDecoder(); const b = new TextEncoder().encode("x😀y€");
			let s = ""; for (const x of b) s += d.decode(new Uint8Array([x]), {stream: true}); return s + d.decode()`, "x😀y€"},
		{"TextDecoder BOM", `return new TextDecoder().decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x41])) + new TextDecoder("utf8", {ignoreBOM: true}).decode(new Uint8Array([0xef, 0xbb, 0xbf])).length`, "A1"},
		{"TextDecoder label", `try { new TextDecoder("latin2"); return "no" } catch (e) { return e.name }`, "RangeError"},
		{"atob btoa", `return btoa("hello\xff") + "|" + atob(" aGVs bG8= ") + "|" + atob("YQ")`, "aGVsbG//|hello|a"},
		{"atob invalid", `try { atob("a"); return "no" } catch (e) { return e.name + (e instanceof DOMException) }`, "InvalidCharacterErrortrue"},
		{"btoa invalid", `try { btoa("€"); return "no" } catch (e) { return e.name }`, "InvalidCharacterError"},
		{"setTimeout order", `const out = []; await new Promise((r) => { setTimeout(() => out.push(2), 2); setTimeout(() => { out.push(3); r(); }, 30); const c = setTimeout(() => out.push("x"), 1); clearTimeout(c); queueMicrotask(() => out.push(1)); }); return out.join()`, "1,2,3"},
		{"setInterval", `let n = 0; await new Promise((r) => { const id = setInterval(() => { if (++n === 3) { clearInterval(id); r(); } }, 1); }); return String(n)`, "3"},
		{"setTimeout args", `return await new Promise((r) => setTimeout((a, b) => r(a + b), 0, "x", "y"))`, "xy"},
		{"performance.now", `const a = performance.now(); await new Promise((r) => setTimeout(r, 3)); const b = performance.now(); return String(b > a && b - a >= 2)`, "true"},
		{"navigator", `return navigator.userAgent`, "Cloudflare-Workers"},
		{"getRandomValues", `const a = new Uint32Array(8); crypto.getRandomValues(a); return String(a.some((x) => x !== 0))`, "true"},
		{"getRandomValues quota", `try { crypto.getRandomValues(new Uint8Array(65537)); return "no" } catch (e) { return e.name }`, "QuotaExceededError"},
		{"randomUUID", `const u = crypto.randomUUID(); return String(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(u) && u !== crypto.randomUUID())`, "true"},
		{"digest", `const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
			const d = new TextEncoder().encode("abc");
			return [await crypto.subtle.digest("SHA-1", d), await crypto.subtle.digest("SHA-256", d), await crypto.subtle.digest({name: "SHA-384"}, d), await crypto.subtle.digest("SHA-512", d)].map((b) => hex(b).slice(0, 16)).join()`,
			"a9993e364706816a,ba7816bf8f01cfea,cb00753f45a35e8b,ddaf35a193617aba"},
		{"hmac", `const enc = new TextEncoder();
			const key = await crypto.subtle.importKey("raw", enc.encode("key"), {name: "HMAC", hash: "SHA-256"}, false, ["sign", "verify"]);
			const sig = await crypto.subtle.sign("HMAC", key, enc.encode("The quick brown fox jumps over the lazy dog"));
			const hex = [...new Uint8Array(sig)].map((x) => x.toString(16).padStart(2, "0")).join("");
			const ok = await crypto.subtle.verify("HMAC", key, sig, enc.encode("The quick brown fox jumps over the lazy dog"));
			const bad = await crypto.subtle.verify("HMAC", key, sig, enc.encode("tampered"));
			return hex + "|" + ok + "|" + bad + "|" + (key instanceof CryptoKey) + key.algorithm.hash.name`,
			"f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8|true|false|trueSHA-256"},
		{"structuredClone", `const o = {d: new Date(5), m: new Map([[1, {x: 1}]]), s: new Set([1]), u: new Uint8Array([1, 2]), r: /a/g, e: new RangeError("x")}; o.self = o;
			const c = structuredClone(o);
			return [c !== o, c.self === c, c.d.getTime(), c.m.get(1).x, c.m.get(1) !== o.m.get(1), c.s.has(1), c.u[1], c.u.buffer !== o.u.buffer, c.r.flags, c.e instanceof RangeError].join()`,
			"true,true,5,1,true,true,2,true,g,true"},
		{"structuredClone function", `try { structuredClone({f() {}}); return "no" } catch (e) { return e.name }`, "DataCloneError"},
		{"AbortController", `const c = new AbortController(); let ev = ""; c.signal.addEventListener("abort", (e) => ev = e.type); c.signal.onabort = () => ev += "+on";
			c.abort(); c.abort("again"); return [c.signal.aborted, ev, c.signal.reason.name, c.signal.reason instanceof DOMException].join()`, "true,abort+on,AbortError,true"},
		{"AbortSignal.timeout", `const s = AbortSignal.timeout(2); await new Promise((r) => s.addEventListener("abort", r)); return s.reason.name`, "TimeoutError"},
		{"AbortSignal.any", `const a = new AbortController(), b = new AbortController(); const s = AbortSignal.any([a.signal, b.signal]); b.abort("why"); return s.aborted + ":" + s.reason + ":" + AbortSignal.any([AbortSignal.abort(1)]).reason`, "true:why:1"},
		{"throwIfAborted", `try { AbortSignal.abort(new Error("stop")).throwIfAborted(); return "no" } catch (e) { return e.message }`, "stop"},
		{"EventTarget", `const t = new EventTarget(); const out = []; const l = (e) => out.push("a" + e.detail);
			t.addEventListener("x", l); t.addEventListener("x", l); t.addEventListener("x", { handleEvent: () => out.push("h") }, {once: true});
			t.addEventListener("y", (e) => { e.preventDefault(); e.stopImmediatePropagation(); }); t.addEventListener("y", () => out.push("never"));
			const ev = new Event("x"); ev.detail = 1; t.dispatchEvent(ev); t.dispatchEvent(ev); t.removeEventListener("x", l); t.dispatchEvent(ev);
			const y = new Event("y", {cancelable: true}); const r = t.dispatchEvent(y);
			return out.join() + "|" + r + "|" + y.defaultPrevented`, "a1,h,a1|false|true"},
		{"Headers", `const h = new Headers([["B", "2"], ["a", " 1 "]]); h.append("a", "3"); h.set("C", "x");
			let bad = ""; try { h.set("bad name", "v"); } catch (e) { bad = e.name }
			return [...h.keys()].join() + "|" + h.get("A") + "|" + bad + "|" + new Headers({X: "y"}).get("x") + "|" + [...h.entries()].length`, "a,b,c|1, 3|TypeError|y|3"},
		{"Request", `const r = new Request("https://example.com/a?b", {method: "post", headers: {"X": "1"}, body: "hi"});
			const c = r.clone(); let bad = ""; try { new Request("https://x/", {method: "GET", body: "x"}); } catch (e) { bad = e.name }
			let rel = ""; try { new Request("/relative"); } catch (e) { rel = e.name }
			return [r.method, r.url, r.headers.get("content-type"), await r.text(), await c.text(), r.bodyUsed, bad, rel, r.redirect].join("|")`,
			"POST|https://example.com/a?b|text/plain;charset=UTF-8|hi|hi|true|TypeError|TypeError|follow"},
		{"Response misc", `const r = new Response("x", {status: 299, statusText: "Fine"}); let e1 = ""; try { new Response("", {status: 600}); } catch (e) { e1 = e.name }
			let e2 = ""; try { Response.redirect("https://x/", 200); } catch (e) { e2 = e.name }
			return [r.ok, r.status, r.statusText, e1, e2, Response.error().type, (await Response.json([1]).json())[0]].join()`, "true,299,Fine,RangeError,RangeError,error,1"},
		{"Blob", `const b = new Blob(["ab", new Uint8Array([99]), new Blob(["d"])], {type: "Text/Plain"});
			return [b.size, b.type, await b.text(), await b.slice(1, -1).text(), (await new Response(b).text()), new File(["x"], "f.txt").name].join()`, "4,text/plain,abcd,bc,abcd,f.txt"},
		{"FormData urlencoded", `const fd = await new Request("https://x/", {method: "POST", body: new URLSearchParams("a=1&b=%C3%A9&a=2")}).formData();
			return fd.getAll("a").join("+") + fd.get("b")`, "1+2é"},
		{"FormData multipart", `const fd = new FormData(); fd.append("name", "v\nw"); fd.append("file", new Blob([new Uint8Array([0, 255])], {type: "application/x-bin"}), "a.bin");
			const req = new Request("https://x/", {method: "POST", body: fd});
			const back = await req.formData(); const f = back.get("file");
			return [back.get("name") === "v\r\nw", f.name, f.type, [...new Uint8Array(await f.arrayBuffer())].join(":"), req.headers.get("content-type").startsWith("multipart/form-data; boundary=")].join()`, "true,a.bin,application/x-bin,0:255,true"},
		{"streams pipeThrough tee async iteration", `const rs = new ReadableStream({ start(c) { c.enqueue("a"); c.enqueue("b"); c.close(); } });
			const up = rs.pipeThrough(new TransformStream({ transform(ch, c) { c.enqueue(ch.toUpperCase()); } }));
			const [x, y] = up.tee(); let s = ""; for await (const ch of x) s += ch;
			const bytes = new Response(y.pipeThrough(new TextEncoderStream())).body.pipeThrough(new TextDecoderStream());
			let t = ""; for await (const ch of bytes) t += ch; return s + "|" + t`, "AB|AB"},
		{"IdentityTransformStream pipeTo", `const its = new IdentityTransformStream(); const w = its.writable.getWriter();
			w.write(new TextEncoder().encode("piped")); w.close(); return await new Response(its.readable).text()`, "piped"},
		{"WritableStream", `const got = []; const ws = new WritableStream({ write(c) { got.push(c); } });
			await new ReadableStream({ start(c) { c.enqueue(1); c.enqueue(2); c.close(); } }).pipeTo(ws); return got.join()`, "1,2"},
		{"console", `console.log("fmt %s=%d", "n", 5, {a: [1, "x"]}); console.error(new TypeError("shown")); return "ok"`, "ok"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := run(t, w, c.src)
			if fmt.Sprint(got) != c.want {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
		})
	}
	l := logs.String()
	for _, want := range []string{`msg="fmt n=5 { a: [ 1, \"x\" ] }"`, "TypeError: shown"} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %s:\n%s", want, l)
		}
	}
}

func TestOutboundFetch(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Method", r.Method)
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			fmt.Fprintf(w, "%s %s %s", r.Method, r.Header.Get("X-In"), b)
		case "/redirect":
			http.Redirect(w, r, "/echo", http.StatusFound)
		case "/slow":
			<-r.Context().Done()
		case "/bin":
			w.Write([]byte{0, 1, 254, 255})
		}
	}))
	defer upstream.Close()
	w, _ := newWorker(t, evalWorker, Config{Vars: map[string]any{"UP": upstream.URL}})
	base := upstream.URL
	cases := []struct{ name, src, want string }{
		{"post", `const r = await fetch("` + base + `/echo", {method: "POST", headers: {"X-In": "hdr"}, body: "payload"});
			return [r.status, r.ok, r.headers.get("x-method"), r.headers.getSetCookie().join(";"), await r.text(), r.url === "` + base + `/echo"].join("|")`,
			"200|true|POST|a=1;b=2|POST hdr payload|true"},
		{"redirect follow", `const r = await fetch("` + base + `/redirect"); return r.redirected + ":" + (await r.text())`, "true:GET  "},
		{"redirect manual", `const r = await fetch("` + base + `/redirect", {redirect: "manual"}); return r.status + ":" + r.headers.get("location")`, "302:/echo"},
		{"binary", `const b = new Uint8Array(await (await fetch("` + base + `/bin")).arrayBuffer()); return b.join()`, "0,1,254,255"},
		{"abort", `const c = new AbortController(); const p = fetch("` + base + `/slow", {signal: c.signal}); setTimeout(() => c.abort(), 5);
			try { await p; return "no" } catch (e) { return e.name }`, "AbortError"},
		{"timeout signal", `try { await fetch("` + base + `/slow", {signal: AbortSignal.timeout(5)}); return "no" } catch (e) { return e.name }`, "TimeoutError"},
		{"bad scheme", `try { await fetch("ftp://x/"); return "no" } catch (e) { return e.name }`, "TypeError"},
		{"request object", `const req = new Request("` + base + `/echo", {method: "PUT", body: new Uint8Array([104, 105])}); return await (await fetch(req)).text()`, "PUT  hi"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := run(t, w, c.src); fmt.Sprint(got) != c.want {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}
