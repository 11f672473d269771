package dev

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/fake"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// crashRuntime is the in-memory runtime with a switch that makes it ignore
// removals: a berth dev whose exit removes nothing leaves its containers
// running, as one killed with SIGKILL does.
type crashRuntime struct {
	*fake.Runtime
	crashed atomic.Bool
}

func (r *crashRuntime) Destroy(ctx context.Context, id string) error {
	if r.crashed.Load() {
		return nil
	}
	return r.Runtime.Destroy(ctx, id)
}

func (r *crashRuntime) Stop(ctx context.Context, id string, grace time.Duration) error {
	if r.crashed.Load() {
		return nil
	}
	return r.Runtime.Stop(ctx, id, grace)
}

// recoverWorker's classes record whether their container ran when the
// activation began.
const recoverWorker = `
import { Container } from "cloudflare:workers";
export class Box extends Container {
  defaultPort = 8080;
  sleepAfter = "10m";
  enableInternet = false;
  runningAtActivation = this.ctx.container.running;
  activation() { return { running: this.runningAtActivation }; }
}
export class Spare extends Box {}
export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    const [, route, name] = url.pathname.split("/");
    const stub = (route === "spare" ? env.SPARE : env.BOX).getByName(name);
    if (route === "activation") return Response.json(await stub.activation());
    return stub.fetch(new Request("http://box/echo", req));
  },
};
`

// recoverConfig is the app of recoverWorker: Box was renamed from Crate by
// a migration, so its objects' storage is under Crate while its containers
// are labelled Box. deleteSpare adds a migration that deletes Spare.
func recoverConfig(deleteSpare bool) string {
	spare := `, {"class_name": "Spare", "image": "./Dockerfile"}`
	binding := `, {"name": "SPARE", "class_name": "Spare"}`
	migration := `, {"tag": "v2", "new_sqlite_classes": ["Spare"]}`
	if deleteSpare {
		spare, binding = "", ""
		migration += `, {"tag": "v3", "deleted_classes": ["Spare"]}`
	}
	return `{"name": "recover", "main": "index.js",
		"containers": [{"class_name": "Box", "image": "./Dockerfile"}` + spare + `],
		"durable_objects": {"bindings": [{"name": "BOX", "class_name": "Box"}` + binding + `]},
		"migrations": [{"tag": "v1", "new_sqlite_classes": ["Crate"]}` + migration + `,
		               {"tag": "v4", "renamed_classes": [{"from": "Crate", "to": "Box"}]}]}`
}

// TestRecoverAfterCrash: a berth dev that ended without removing its
// containers (as one killed with SIGKILL does) leaves them to the next
// run, which takes over those whose objects still exist (the same
// container answers, ctx.container.running is true at the object's next
// activation) and removes those whose objects do not (their class was
// deleted meanwhile); after a normal exit none is left. Box's objects keep
// their storage under the class's first name (renamed_classes), which is
// where the next run must look.
func TestRecoverAfterCrash(t *testing.T) {
	rt := &crashRuntime{Runtime: fake.New(fake.Options{Programs: map[string]fake.Program{"/testapp": testapp.Main}})}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "testapp"), "placeholder: the fake runs testapp.Main\n")
	writeFile(t, filepath.Join(dir, "Dockerfile"), "FROM scratch\nCOPY testapp /testapp\nEXPOSE 8080\nENTRYPOINT [\"/testapp\"]\n")
	writeFile(t, filepath.Join(dir, "index.js"), recoverWorker)
	writeFile(t, filepath.Join(dir, "wrangler.jsonc"), recoverConfig(false))
	logs := &syncBuffer{}
	opts := Options{Dir: dir, StateDir: t.TempDir(), ContainerRuntime: rt,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), ContainerLabels: map[string]string{container.LabelTest: "1"}}
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()

	type echo struct {
		Hostname string `json:"hostname"`
	}
	url, stop := runDev(t, opts)
	var box, spare echo
	getJSONStatus(t, url+"/c/a", &box)
	getJSONStatus(t, url+"/spare/s", &spare)
	if list := rtList(t, rt); len(list) != 2 {
		t.Fatalf("%d containers after two objects' first requests, want 2: %+v", len(list), list)
	}
	rt.crashed.Store(true)
	stop()
	rt.crashed.Store(false)
	byClass := map[string]container.Instance{}
	for _, in := range rtList(t, rt) {
		if !in.Running {
			t.Fatalf("container %s stopped with the crash", in.Name)
		}
		byClass[in.Labels[container.LabelClass]] = in
	}
	if !strings.HasPrefix(byClass["Box"].ID, box.Hostname) || !strings.HasPrefix(byClass["Spare"].ID, spare.Hostname) {
		t.Fatalf("after the crash the containers are %+v, want Box's (%s) and Spare's (%s)", byClass, box.Hostname, spare.Hostname)
	}

	// While berth is down, the app deletes class Spare.
	writeFile(t, filepath.Join(dir, "wrangler.jsonc"), recoverConfig(true))
	url, stop = runDev(t, opts)
	if list := rtList(t, rt); len(list) != 1 || list[0].ID != byClass["Box"].ID {
		t.Fatalf("after the restart the containers are %+v, want only Box's %s", list, byClass["Box"].Name)
	}
	var act struct{ Running bool }
	getJSONStatus(t, url+"/activation/a", &act)
	if !act.Running {
		t.Errorf("ctx.container.running at object a's first activation after the restart = false, want true (its container was taken over)")
	}
	var again echo
	getJSONStatus(t, url+"/c/a", &again)
	if again.Hostname != box.Hostname {
		t.Errorf("object a answered from %s after the restart, want its container %s", again.Hostname, box.Hostname)
	}
	for _, want := range []string{`msg="re-attached a running container"`, `msg="removing the container of an owner that no longer exists" app=recover owner=Spare/`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %s", want)
		}
	}
	stop()
	if list := rtList(t, rt); len(list) != 0 {
		t.Errorf("%d containers left after berth dev ended: %+v", len(list), list)
	}
}

func rtList(t *testing.T, rt container.Runtime) []container.Instance {
	t.Helper()
	list, err := rt.List(context.Background(), map[string]string{container.LabelApp: "recover"})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func getJSONStatus(t *testing.T, url string, v any) {
	t.Helper()
	code, body := getStatus(t, url)
	if code != 200 {
		t.Fatalf("GET %s = %d %s", url, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s = %s: %v", url, body, err)
	}
}
