package dev

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/container"
)

// TestContainerExecOnEngine runs ctx.container.exec() in a real container
// through berth dev: a process's pid is the one it sees as its own, and
// resize() reaches its terminal.
func TestContainerExecOnEngine(t *testing.T) {
	dir := containerProject(t)
	// The app of builtin.jsonc under a name of its own, so that what this
	// test leaves is told apart from the other container tests'.
	const app = "containers-exec"
	writeFile(t, filepath.Join(dir, "exec.jsonc"), `{
		"name": "`+app+`", "main": "src/builtin.js", "compatibility_date": "2025-11-20",
		"containers": [{ "class_name": "Echo", "image": "./Dockerfile" }, { "class_name": "Broken", "image": "./Dockerfile" }],
		"durable_objects": { "bindings": [{ "name": "ECHO", "class_name": "Echo" }, { "name": "BROKEN", "class_name": "Broken" }] },
		"migrations": [{ "tag": "v1", "new_sqlite_classes": ["Echo", "Broken"] }]
	}`)
	testDocker(t, app)
	logs := &syncBuffer{}
	url, _ := runDev(t, Options{Dir: dir, ConfigPath: "exec.jsonc",
		Logger:          slog.New(slog.NewTextHandler(logs, nil)),
		ContainerLabels: map[string]string{container.LabelTest: "1"}})

	code, body := getStatus(t, url+"/exec/a")
	if code != 200 {
		t.Fatalf("exec: %d %s\nlog:\n%s", code, body, logs)
	}
	var got struct {
		PID, Code, TTYPid, TTYCode int
		Printed                    string
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got.PID <= 1 || got.Printed != fmt.Sprintf("pid=%d", got.PID) || got.Code != 0 {
		t.Errorf("pid = %d, the process printed %q (exit %d); want the pid it sees, above the main process's", got.PID, got.Printed, got.Code)
	}
	if got.TTYPid <= 1 || got.TTYPid == got.PID || got.TTYCode != 0 {
		t.Errorf("tty process: pid %d, exit %d; want a pid of its own and exit 0 after the resize was seen", got.TTYPid, got.TTYCode)
	}
	if strings.Contains(logs.String(), "exec resize failed") {
		t.Errorf("a resize failed:\n%s", logs)
	}
}
