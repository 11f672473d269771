package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveHost(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	// A docker CLI configuration whose current context is "colima", laid
	// out as the CLI's context store keeps it.
	cliDir := t.TempDir()
	sum := sha256.Sum256([]byte("colima"))
	meta := filepath.Join(cliDir, "contexts", "meta", hex.EncodeToString(sum[:]))
	if err := os.MkdirAll(meta, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string]string{
		filepath.Join(cliDir, "config.json"): `{"auths": {}, "currentContext": "colima"}`,
		filepath.Join(meta, "meta.json"):     `{"Name":"colima","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///colima/docker.sock","SkipTLSVerify":false}}}`,
	} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name       string
		configured string
		env        map[string]string
		want, err  string
	}{
		{"the config first", "unix:///a.sock", map[string]string{"WRANGLER_DOCKER_HOST": "unix:///b.sock"}, "unix:///a.sock", ""},
		{"then WRANGLER_DOCKER_HOST", "", map[string]string{"WRANGLER_DOCKER_HOST": "/b.sock", "DOCKER_HOST": "unix:///c.sock"}, "unix:///b.sock", ""},
		{"then the Docker client's own", "", map[string]string{"DOCKER_HOST": "unix:///c.sock", "DOCKER_CONFIG": cliDir}, "", ""},
		{"then the CLI's current context", "", map[string]string{"DOCKER_CONFIG": cliDir}, "unix:///colima/docker.sock", ""},
		{"DOCKER_CONTEXT over the current one", "", map[string]string{"DOCKER_CONFIG": cliDir, "DOCKER_CONTEXT": "default"}, "", ""},
		{"a context the store lacks", "", map[string]string{"DOCKER_CONFIG": cliDir, "DOCKER_CONTEXT": "gone"}, "", `docker context "gone"`},
		{"no CLI config", "", map[string]string{"HOME": t.TempDir()}, "", ""},
		{"a bad WRANGLER_DOCKER_HOST", "", map[string]string{"WRANGLER_DOCKER_HOST": "docker.sock"}, "", "WRANGLER_DOCKER_HOST"},
	} {
		got, err := ResolveHost(c.configured, env(c.env))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want one naming %s", c.name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}
