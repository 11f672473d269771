package dev

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

const objectWorker = `
import { DurableObject } from "cloudflare:workers";
export class Room extends DurableObject {
  hello() { return "room " + this.ctx.id.name; }
}
export default {
  async fetch(req, env) { return new Response(await env.ROOMS.getByName("r1").hello()); },
};`

// TestDurableObjectConfigChecked: a binding to a class the script does not
// export, or to a class without a migration, stops berth dev at load with
// a message naming both.
func TestDurableObjectConfigChecked(t *testing.T) {
	for _, tc := range []struct{ name, config, want string }{
		{"not exported", `{"name": "t", "main": "index.ts",
			"durable_objects": {"bindings": [{"name": "ROOMS", "class_name": "Lobby"}]},
			"migrations": [{"tag": "v1", "new_sqlite_classes": ["Lobby"]}]}`, `binding "ROOMS": class "Lobby" is not exported`},
		{"no migration", `{"name": "t", "main": "index.ts",
			"durable_objects": {"bindings": [{"name": "ROOMS", "class_name": "Room"}]}}`, `binding "ROOMS": class "Room" has no migration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "index.ts"), objectWorker)
			writeFile(t, filepath.Join(dir, "wrangler.jsonc"), tc.config)
			err := Run(context.Background(), Options{Dir: dir, Port: 0, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestDurableObjectExportsConfig serves a class declared in the newer
// top-level exports form instead of migrations.
func TestDurableObjectExportsConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "index.ts"), objectWorker)
	writeFile(t, filepath.Join(dir, "wrangler.jsonc"), `{"name": "t", "main": "index.ts",
		"durable_objects": {"bindings": [{"name": "ROOMS", "class_name": "Room"}]},
		"exports": {"Room": {"type": "durable-object", "storage": "sqlite"}}}`)
	url, _ := runDev(t, Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if body := get(t, url+"/"); body != "room r1" {
		t.Fatalf("got %q", body)
	}
}
