package dev

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// migratedWorker exports the Durable Object class CLASS, bound as OBJ: a
// POST stores ?v= in the object named "x", every request answers its id
// and stored value.
const migratedWorker = `
import { DurableObject } from "cloudflare:workers";
export class CLASS extends DurableObject {
  async put(v) { await this.ctx.storage.put("v", v); }
  async read() { return this.ctx.id.toString() + " " + ((await this.ctx.storage.get("v")) ?? "none"); }
}
export default {
  async fetch(req, env) {
    const stub = env.OBJ.get(env.OBJ.idFromName("x"));
    if (req.method === "POST") await stub.put(new URL(req.url).searchParams.get("v"));
    return new Response(await stub.read());
  },
};`

func post(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestRenamedAndDeletedClasses: after renamed_classes A -> B, class B has
// A's objects under the same ids; after deleted_classes B, its storage is
// gone.
func TestRenamedAndDeletedClasses(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	write := func(class, migrations string) {
		binding := `"durable_objects": {"bindings": [{"name": "OBJ", "class_name": "` + class + `"}]},`
		script := strings.ReplaceAll(migratedWorker, "CLASS", class)
		if class == "" {
			binding = ""
			script = `export default { async fetch() { return new Response("plain"); } };`
		}
		writeFile(t, filepath.Join(dir, "index.ts"), script)
		writeFile(t, filepath.Join(dir, "wrangler.jsonc"), `{"name": "t", "main": "index.ts", `+binding+`
			"migrations": [`+migrations+`]}`)
	}
	const v1 = `{"tag": "v1", "new_sqlite_classes": ["A"]}`
	const v2 = `{"tag": "v2", "renamed_classes": [{"from": "A", "to": "B"}]}`
	const v3 = `{"tag": "v3", "deleted_classes": ["B"]}`

	write("A", v1)
	url, stop := runDev(t, opts)
	before := post(t, url+"/?v=hello")
	id, value, _ := strings.Cut(before, " ")
	if len(id) != 64 || value != "hello" {
		t.Fatalf("POST through A = %q", before)
	}
	stop()

	write("B", v1+","+v2)
	url, stop = runDev(t, opts)
	if got := get(t, url+"/"); got != before {
		t.Fatalf("through B after the rename: %q, want %q (same id, same value)", got, before)
	}
	stop()
	objects := filepath.Join(dir, ".berth", "state", "objects")
	if _, err := os.Stat(filepath.Join(objects, "A", id+".sqlite")); err != nil {
		t.Fatalf("storage is not kept under the class's first name: %v", err)
	}

	write("", v1+","+v2+","+v3)
	url, out := startDev(t, opts)
	if got := get(t, url+"/"); got != "plain" {
		t.Fatalf("got %q", got)
	}
	if !strings.Contains(out.String(), "Deleted the storage of Durable Object class A") {
		t.Fatalf("no line about the deleted class in %q", out)
	}
	if _, err := os.Stat(filepath.Join(objects, "A")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("storage of the deleted class is still there: %v", err)
	}
}
