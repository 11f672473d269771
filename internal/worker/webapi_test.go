package worker

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
)

// evalWorker answers every request by running the body of the request as an
// async function and returning its result as JSON.
const evalWorker = `
export default {
  async fetch(req: Request) {
    const src = await req.text();
    const fn = new Function("return (async () => {" + src + "})()");
    try { return Response.json({ ok: await fn() }); }
    catch (e) { return Response.json({ err: String(e), name: e && e.name }); }
  },
};`

// run evaluates src in a Worker and returns the value it returned, failing
// the test on an exception.
func run(t *testing.T, w http.Handler, src string) any {
	t.Helper()
	rec := do(t, w, "POST", "http://x/", strings.NewReader(src))
	var out struct {
		OK   any    `json:"ok"`
		Err  string `json:"err"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("status %d, body %q: %v", rec.Code, rec.Body.String(), err)
	}
	if out.Err != "" {
		t.Fatalf("script threw %s", out.Err)
	}
	return out.OK
}

func TestURLWebPlatformTests(t *testing.T) {
	w, _ := newWorker(t, evalWorker, Config{})
	for _, f := range []string{"urltestdata.json", "setters_tests.json"} {
		data, err := os.ReadFile("../../../shared/testdata/wpt/" + f)
		if err != nil {
			t.Skipf("WPT data not found: %v", err)
		}
		var script string
		if f == "urltestdata.json" {
			script = `const cases = ` + string(data) + `;
const fails = []; let n = 0;
const props = ["href", "origin", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search", "hash"];
for (const c of cases) {
  if (typeof c === "string") continue;
  n++;
  let u;
  try { u = c.base === null ? new URL(c.input) : new URL(c.input, c.base); }
  catch (e) { if (!c.failure) fails.push("threw: " + JSON.stringify(c.input) + " " + e); continue; }
  if (c.failure) { fails.push("parsed but should fail: " + JSON.stringify(c.input)); continue; }
  for (const p of props) if (p in c && u[p] !== c[p]) fails.push(JSON.stringify(c.input) + " " + p + "=" + JSON.stringify(u[p]) + " want " + JSON.stringify(c[p]));
  if (c.search !== undefined && u.searchParams.toString() !== new URLSearchParams(c.search).toString()) fails.push("searchParams of " + c.input);
  if (URL.canParse(c.input, c.base === null ? undefined : c.base) !== true) fails.push("canParse " + c.input);
}
return { n, fails };`
		} else {
			script = `const groups = ` + string(data) + `;
const fails = []; let n = 0;
for (const [setter, cases] of Object.entries(groups)) {
  if (setter === "comment") continue;
  for (const c of cases) {
    n++;
    const u = new URL(c.href);
    u[setter] = c.new_value;
    for (const [p, want] of Object.entries(c.expected)) if (u[p] !== want) fails.push(setter + "(" + JSON.stringify(c.new_value) + ") on " + c.href + ": " + p + "=" + JSON.stringify(u[p]) + " want " + JSON.stringify(want));
  }
}
return { n, fails };`
		}
		res := run(t, w, script).(map[string]any)
		fails := res["fails"].([]any)
		t.Logf("%s: %v cases, %d failures", f, res["n"], len(fails))
		if res["n"].(float64) < 100 {
			t.Errorf("%s: only %v cases ran", f, res["n"])
		}
		for i, f := range fails {
			if i == 20 {
				t.Errorf("… %d more", len(fails)-20)
				break
			}
			t.Error(f)
		}
	}
}

func TestURLSearchParams(t *testing.T) {
	w, _ := newWorker(t, evalWorker, Config{})
	got := run(t, w, `
const p = new URLSearchParams("?a=1&b=2&a=3&sp=x+y&enc=%26");
p.append("c", "é ü"); p.delete("b"); p.sort();
const u = new URL("https://h/p?x=1"); u.searchParams.set("y", "2 3");
return [p.getAll("a").join(","), p.get("sp"), p.get("enc"), p.toString(), u.href, [...new URLSearchParams({k: "v"})].join()].join("|");`)
	want := "1,3|x y|&|a=1&a=3&c=%C3%A9+%C3%BC&enc=%26&sp=x+y|https://h/p?x=1&y=2+3|k,v"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// A URL makes its URLSearchParams when first asked for (gen.go's
// lazySearchParams); made late, it must still follow the query as it is
// then, and stay tied to the URL both ways.
func TestURLSearchParamsMadeLate(t *testing.T) {
	w, _ := newWorker(t, evalWorker, Config{})
	got := run(t, w, `
const out = [];
const a = new URL("http://h/?x=1"); a.href = "http://g/?y=2"; out.push(a.searchParams.get("y"), a.searchParams.get("x"));
const b = new URL("http://h/?x=1"); b.search = "?z=3"; out.push(b.searchParams.get("z"));
const c = new URL("http://h/"); c.searchParams.append("k", "v w"); out.push(c.href);
const d = new URL("http://h/?x=1"); const sp = d.searchParams; d.search = "q=9"; out.push(sp.get("q"), d.searchParams === sp);
const e = new URL("http://h/p?x=1#f"); e.hash = "g"; e.pathname = "/r"; out.push(e.searchParams.toString(), e.href);
return out.join("|");`)
	want := "2||3|http://h/?k=v+w|9|true|x=1|http://h/r?x=1#g"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// berth's URL answers from a shared parsed record until a setter or
// searchParams hands it to whatwg-url's URL: URLs of the same input stay
// independent, and what one reads after a change is the change.
func TestURLRecordsShared(t *testing.T) {
	w, _ := newWorker(t, evalWorker, Config{})
	got := run(t, w, `
const out = [];
const x = "HTTP://Example.com:80/a/./b?q=1#f";
const a = new URL(x), b = new URL(x);
out.push(a.href, a.pathname, a.host, a.origin);
a.pathname = "/z"; a.searchParams.append("r", "2");
out.push(a.href, b.href, new URL(x).pathname, b.search, b.hash);
const c = new URL("/p?k=v", "https://h.example/base/");
out.push(c.href, c.searchParams.get("k"), c.port, c.protocol);
out.push(String(URL.parse("nope")), URL.parse("http://h/x").pathname, URL.canParse("http://h"), URL.canParse("x", "bad base"));
try { Object.getOwnPropertyDescriptor(URL.prototype, "href").get.call({}); out.push("no brand check"); } catch (e) { out.push(e.constructor.name); }
try { new URL(); } catch (e) { out.push(e.message); }
try { new URL("x"); } catch (e) { out.push(e.message); }
out.push(Object.prototype.toString.call(a), JSON.stringify({ a: b }), URL.length, Object.keys(URL.prototype).length);
return out.join("|");`)
	want := "http://example.com/a/b?q=1#f|/a/b|example.com|http://example.com|" +
		"http://example.com/z?q=1&r=2#f|http://example.com/a/b?q=1#f|/a/b|?q=1|#f|" +
		"https://h.example/p?k=v|v||https:|" +
		"null|/x|true|false|TypeError|" +
		"Failed to construct 'URL': 1 argument required, but only 0 present.|Invalid URL: x|" +
		`[object URL]|{"a":"http://example.com/a/b?q=1#f"}|1|14`
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// Request and Response keep the headers of what the runtime made in wire
// form until a script reads them; copies made from them must still behave
// as the Fetch standard says: a new Request's headers are its own and
// mutable, a fetched or received one's are immutable.
func TestLazyHeadersCopies(t *testing.T) {
	w, _ := newWorker(t, `export default { async fetch(req) {
  const out = [];
  const copy = new Request("http://other/x", req); copy.headers.set("x-new", "1");
  out.push(copy.headers.get("x-in"), copy.headers.get("x-new"), req.headers.get("x-new"), copy.method, copy.url);
  const again = new Request(req); again.headers.append("x-in", "2");
  out.push(again.headers.get("x-in"), req.headers.get("x-in"));
  try { req.headers.set("x", "1"); out.push("mutable"); } catch { out.push("immutable"); }
  const withBody = new Request("http://other/y", { method: "POST", body: "b", headers: req.headers });
  out.push(withBody.headers.get("content-type"), withBody.headers.get("x-in"), await withBody.text());
  return new Response(out.join("|"));
} };`, Config{})
	rec := do(t, w, "GET", "http://h/p", nil, "X-In", "1")
	want := "1|1||GET|http://other/x|1, 2|1|immutable|text/plain;charset=UTF-8|1|b"
	if rec.Body.String() != want {
		t.Errorf("got  %q\nwant %q", rec.Body.String(), want)
	}
}
