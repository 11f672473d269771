package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const containerApp = `{
  // The Worker and its container, as in Cloudflare's template.
  "name": "my-app",
  "main": "src/index.ts",
  "compatibility_date": "2026-11-01",
  "vars": { "GREETING": "hi", "LIMIT": 3 },
  "containers": [
    {
      "class_name": "MyContainer",
      "image": "./Dockerfile",
      "image_vars": { "VERSION": "1" },
      "instance_type": { "vcpu": 1, "memory_mib": 3072, "disk_mb": 4000 },
    },
  ],
  "durable_objects": {
    "bindings": [{ "name": "MY_CONTAINER", "class_name": "MyContainer" }],
  },
  "migrations": [{ "tag": "v1", "new_sqlite_classes": ["MyContainer"] }],
}
`

func parse(t *testing.T, name, text string) (*Config, error) {
	t.Helper()
	return Parse(filepath.Join("/proj", name), []byte(text))
}

func TestParseJSONC(t *testing.T) {
	cfg, err := parse(t, "wrangler.jsonc", containerApp)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "my-app" || cfg.Main != "src/index.ts" || cfg.Dir != "/proj" {
		t.Fatalf("cfg = %+v", cfg)
	}
	if cfg.Vars["GREETING"] != "hi" || cfg.Vars["LIMIT"] != float64(3) {
		t.Fatalf("vars = %#v", cfg.Vars)
	}
	ct := cfg.Containers[0]
	if ct.ClassName != "MyContainer" || ct.ImageVars["VERSION"] != "1" || ct.MaxInstancesOrDefault() != 20 {
		t.Fatalf("container = %+v", ct)
	}
	it, err := ct.InstanceType.Resolve()
	if err != nil || it.Name != "custom" || it.MemoryMiB != 3072 {
		t.Fatalf("instance type = %+v, %v", it, err)
	}
	if got := cfg.MigratedClasses(); !slices.Equal(got, []string{"MyContainer"}) {
		t.Fatalf("migrated classes = %v", got)
	}
	if len(cfg.Warnings) != 0 {
		t.Fatalf("warnings = %v", cfg.Warnings)
	}
}

func TestParseTOML(t *testing.T) {
	cfg, err := parse(t, "wrangler.toml", `
name = "my-app"
main = "src/index.js"

[[containers]]
class_name = "MyContainer"
image = "docker.io/library/app:1"
instance_type = "standard"
max_instances = 0

[[durable_objects.bindings]]
name = "MY_CONTAINER"
class_name = "MyContainer"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["MyContainer"]
`)
	if err != nil {
		t.Fatal(err)
	}
	ct := cfg.Containers[0]
	it, err := ct.InstanceType.Resolve()
	if err != nil || it.Name != "standard-1" || ct.MaxInstancesOrDefault() != 0 {
		t.Fatalf("container = %+v, type %+v, %v", ct, it, err)
	}
}

func TestErrorsNameFileLineAndKey(t *testing.T) {
	for _, tc := range []struct {
		name, file, text string
		want             []string
	}{
		{"bad instance type", "wrangler.jsonc", strings.Replace(containerApp,
			`{ "vcpu": 1, "memory_mib": 3072, "disk_mb": 4000 }`, `"huge"`, 1),
			[]string{"/proj/wrangler.jsonc:12: containers[0].instance_type", `"huge"`}},
		{"wrong type", "wrangler.jsonc", strings.Replace(containerApp,
			`"image_vars"`, `"max_instances": "ten", "image_vars"`, 1),
			[]string{"/proj/wrangler.jsonc:11", "containers.max_instances", "want a number"}},
		{"syntax", "wrangler.jsonc", "{\n  \"name\": \"x\",\n  \"main\" \"y\"\n}",
			[]string{"/proj/wrangler.jsonc:3", "syntax"}},
		{"class not an object", "wrangler.json", `{"containers": [{"class_name": "Nope", "image": "x"}]}`,
			[]string{"containers[0].class_name", `"Nope" is not a Durable Object class`}},
		{"missing image", "wrangler.jsonc", strings.Replace(containerApp, `"image": "./Dockerfile",`, ``, 1),
			[]string{"containers[0].image", "required"}},
		{"binding without class", "wrangler.json", `{"durable_objects": {"bindings": [{"name": "A"}]}}`,
			[]string{"durable_objects.bindings[0].class_name", "required"}},
		{"duplicate tag", "wrangler.json", `{"migrations": [{"tag": "v1"}, {"tag": "v1"}]}`,
			[]string{"migrations[1].tag", `"v1" is used twice`}},
		{"toml key", "wrangler.toml", "name = \"a\"\n\n[limits]\ncpu_ms = -5\n",
			[]string{"/proj/wrangler.toml:4: limits.cpu_ms"}},
		{"toml syntax", "wrangler.toml", "name = \"a\"\nmain = \n",
			[]string{"/proj/wrangler.toml:2", "syntax"}},
		{"date", "wrangler.json", `{"compatibility_date": "yesterday"}`,
			[]string{"compatibility_date", "YYYY-MM-DD"}},
		{"container engine scheme", "wrangler.json", `{"dev": {"container_engine": "ssh://host"}}`,
			[]string{"dev.container_engine", `"ssh://host"`, "unix://"}},
		{"container engine shape", "wrangler.jsonc", "{\n  \"dev\": {\n    \"container_engine\": {\"podman\": {}}\n  }\n}",
			[]string{"/proj/wrangler.jsonc:3", "container_engine", "localDocker"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.file, tc.text)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %v, want a *config.Error", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestContainerEngine(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"socket string", `{"dev": {"container_engine": "unix:///run/podman/podman.sock"}}`, "unix:///run/podman/podman.sock"},
		{"localDocker", `{"dev": {"container_engine": {"localDocker": {"socketPath": "/var/run/docker.sock"}}}}`, "unix:///var/run/docker.sock"},
		{"tcp", "[dev]\ncontainer_engine = \"tcp://127.0.0.1:2375\"\n", "tcp://127.0.0.1:2375"},
		{"absent", `{}`, ""},
	} {
		file := "wrangler.json"
		if strings.HasPrefix(tc.text, "[") {
			file = "wrangler.toml"
		}
		cfg, err := parse(t, file, tc.text)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := cfg.Dev.ContainerEngine.Socket; got != tc.want {
			t.Errorf("%s: container engine %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestUnknownKeysWarn(t *testing.T) {
	cfg, err := parse(t, "wrangler.json", `{"name": "a", "kv_namespacez": [], "containers": []}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], `"kv_namespacez"`) {
		t.Fatalf("warnings = %v", cfg.Warnings)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	if _, err := Find(dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty dir: err = %v", err)
	}
	for _, name := range []string{"wrangler.toml", "wrangler.jsonc"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Find(dir)
	if err != nil || filepath.Base(got) != "wrangler.jsonc" {
		t.Fatalf("Find = %q, %v; want wrangler.jsonc first", got, err)
	}
}

func TestMigratedClassesFollowRenamesAndDeletes(t *testing.T) {
	cfg, err := parse(t, "wrangler.json", `{"migrations": [
		{"tag": "v1", "new_sqlite_classes": ["A", "B"]},
		{"tag": "v2", "renamed_classes": [{"from": "A", "to": "C"}], "deleted_classes": ["B"]}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.MigratedClasses(); !slices.Equal(got, []string{"C"}) {
		t.Fatalf("classes = %v, want [C]", got)
	}
}

func TestClassIdentityFollowsRenamesBack(t *testing.T) {
	cfg, err := parse(t, "wrangler.json", `{"migrations": [
		{"tag": "v1", "new_sqlite_classes": ["A", "Other"]},
		{"tag": "v2", "renamed_classes": [{"from": "A", "to": "B"}]},
		{"tag": "v3", "renamed_classes": [{"from": "B", "to": "C"}], "new_sqlite_classes": ["A"]}]}`)
	if err != nil {
		t.Fatal(err)
	}
	for class, want := range map[string]string{"C": "A", "Other": "Other", "Unknown": "Unknown"} {
		if got := cfg.ClassIdentity(class); got != want {
			t.Errorf("ClassIdentity(%q) = %q, want %q", class, got, want)
		}
	}
	// A created again after A was renamed away: a new class whose identity
	// collides with C's. Cloudflare keeps them apart; so must we.
	if got := cfg.ClassIdentity("A"); got == cfg.ClassIdentity("C") {
		t.Errorf("new A shares identity %q with renamed C", got)
	}
}

func TestDeletedClassIdentities(t *testing.T) {
	cfg, err := parse(t, "wrangler.json", `{"migrations": [
		{"tag": "v1", "new_sqlite_classes": ["A", "B", "Keep"]},
		{"tag": "v2", "renamed_classes": [{"from": "A", "to": "Gone"}]},
		{"tag": "v3", "deleted_classes": ["Gone", "B"]},
		{"tag": "v4", "new_sqlite_classes": ["B"]}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.DeletedClassIdentities(); !slices.Equal(got, []string{"A", "B"}) {
		t.Fatalf("deleted identities = %v, want [A B]", got)
	}
	if got := cfg.ClassIdentity("B"); got == "B" {
		t.Fatalf("B made again has the deleted B's identity %q", got)
	}
	if got := cfg.MigratedClasses(); !slices.Equal(got, []string{"Keep", "B"}) {
		t.Fatalf("classes = %v, want [Keep B]", got)
	}
}
