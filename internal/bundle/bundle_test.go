package bundle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBuildTypeScriptWithPackagesAndBuiltins(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"src/index.ts": `
import { DurableObject } from "cloudflare:workers";
import { greet } from "greeter";
import { twice } from "./util";
import { view } from "./view";
interface Env { NAME: string }
export class Counter extends DurableObject {}
export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    return new Response(greet(env.NAME) + twice(2) + view());
  },
} satisfies ExportedHandler<Env>;`,
		"src/util.ts":  `export const twice = (n: number): number => n * 2;`,
		"src/view.tsx": "/** @jsx h */\nconst h = (tag: string, _p: unknown, ...kids: string[]) => `<${tag}>${kids.join(\"\")}</${tag}>`;\nexport const view = () => <b>hi</b>;",
		// greeter's exports map prefers the workerd condition, as wrangler's config does.
		"node_modules/greeter/package.json": `{"name":"greeter","exports":{".":{"workerd":"./workerd.js","node":"./node.js","default":"./node.js"}}}`,
		"node_modules/greeter/workerd.js":   `export const greet = (n) => "hello from workerd, " + n;`,
		"node_modules/greeter/node.js":      `export const greet = (n) => "hello from node, " + n;`,
	})
	res, err := Build(context.Background(), Options{Entry: "src/index.ts", Dir: dir, Builtins: []string{"cloudflare:workers"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`from "cloudflare:workers"`, "hello from workerd", "export {", "sourceMappingURL=data:application/json;base64,"} {
		if !strings.Contains(res.Code, want) {
			t.Errorf("bundle lacks %q:\n%s", want, res.Code)
		}
	}
	if strings.Contains(res.Code, "hello from node") || strings.Contains(res.Code, "interface Env") {
		t.Errorf("bundle has node build or TypeScript types:\n%s", res.Code)
	}
	if !strings.Contains(res.SourceMap, "src/index.ts") {
		t.Errorf("source map does not name src/index.ts: %.200s", res.SourceMap)
	}
	if strings.Join(res.Inputs, ",") != "node_modules/greeter/workerd.js,src/index.ts,src/util.ts,src/view.tsx" {
		t.Errorf("inputs = %v", res.Inputs)
	}
}

func TestBuildRejectsUnservedImports(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"index.js": `import "./lib/a.js"; export default {};`,
		"lib/a.js": `import { connect } from "cloudflare:sockets"; import x from "left-pad"; export { connect, x };`,
	})
	_, err := Build(context.Background(), Options{Entry: "index.js", Dir: dir, Builtins: []string{"cloudflare:workers"}})
	if !errors.Is(err, ErrBundle) {
		t.Fatalf("err = %v, want ErrBundle", err)
	}
	msg := err.Error()
	for _, want := range []string{`"cloudflare:sockets" is not provided by berth (imported by lib/a.js)`, `cannot resolve import "left-pad" (imported by lib/a.js)`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
}

func TestBuildBadOptions(t *testing.T) {
	if _, err := Build(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "no entry") {
		t.Errorf("err = %v", err)
	}
	_, err := Build(context.Background(), Options{Entry: "nope.ts", Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), `"nope.ts"`) {
		t.Errorf("err = %v", err)
	}
}

func TestBuildSyntaxErrorNamesFile(t *testing.T) {
	dir := writeFiles(t, map[string]string{"w.ts": "export default {\n  fetch( {\n};"})
	_, err := Build(context.Background(), Options{Entry: "w.ts", Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "w.ts:3:") {
		t.Fatalf("err = %v", err)
	}
}
