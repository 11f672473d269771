package actor

import (
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/config"
)

func parseConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("/proj/wrangler.jsonc", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		config   string
		exported []string
		want     []string // substrings of the error; nil: valid
	}{
		{"template app", `{"main": "src/index.js",
			"containers": [{"class_name": "MyContainer", "image": "./Dockerfile"}],
			"durable_objects": {"bindings": [{"name": "MY_CONTAINER", "class_name": "MyContainer"}]},
			"migrations": [{"tag": "v1", "new_sqlite_classes": ["MyContainer"]}]}`,
			[]string{"MyContainer", "ContainerProxy"}, nil},
		{"exports form needs no migration", `{
			"containers": [{"name": "box", "image": "./Dockerfile"}],
			"durable_objects": {"bindings": [{"name": "BOX", "class_name": "Box"}]},
			"exports": {"Box": {"type": "durable-object", "storage": "sqlite", "container": "box"}}}`,
			[]string{"Box"}, nil},
		{"renamed class", `{
			"durable_objects": {"bindings": [{"name": "C", "class_name": "Counter2"}]},
			"migrations": [{"tag": "v1", "new_classes": ["Counter"]},
				{"tag": "v2", "renamed_classes": [{"from": "Counter", "to": "Counter2"}]}]}`,
			[]string{"Counter2"}, nil},
		{"binding to a class the script does not export", `{"main": "src/index.js",
			"durable_objects": {"bindings": [{"name": "MY_CONTAINER", "class_name": "MyContainer"}]},
			"migrations": [{"tag": "v1", "new_sqlite_classes": ["MyContainer"]}]}`,
			[]string{"Other"},
			[]string{"/proj/wrangler.jsonc: durable_objects.bindings[0].class_name", `binding "MY_CONTAINER"`, `class "MyContainer" is not exported by the script src/index.js`, "it exports Other"}},
		{"binding without migration", `{
			"durable_objects": {"bindings": [{"name": "A", "class_name": "Alpha"}, {"name": "B", "class_name": "Beta"}]},
			"migrations": [{"tag": "v1", "new_sqlite_classes": ["Alpha"]}]}`,
			[]string{"Alpha", "Beta"},
			[]string{"durable_objects.bindings[1].class_name", `binding "B"`, `class "Beta" has no migration`, `"new_sqlite_classes": ["Beta"]`}},
		{"binding to a deleted class", `{
			"durable_objects": {"bindings": [{"name": "A", "class_name": "Alpha"}]},
			"migrations": [{"tag": "v1", "new_sqlite_classes": ["Alpha"]}, {"tag": "v2", "deleted_classes": ["Alpha"]}]}`,
			[]string{"Alpha"},
			[]string{`binding "A"`, `class "Alpha" has no migration`}},
		{"binding with exports form but no entry", `{
			"durable_objects": {"bindings": [{"name": "A", "class_name": "Alpha"}]},
			"exports": {"Beta": {"type": "durable-object"}}}`,
			[]string{"Alpha", "Beta"},
			[]string{`binding "A"`, `class "Alpha" has no exports entry`}},
		{"binding to another script", `{"name": "app",
			"durable_objects": {"bindings": [{"name": "A", "class_name": "Alpha", "script_name": "other"}]},
			"migrations": [{"tag": "v1", "new_sqlite_classes": ["Alpha"]}]}`,
			[]string{"Alpha"},
			[]string{"durable_objects.bindings[0].script_name", `binding "A"`, `class "Alpha" of script "other"`}},
		{"container class not exported", `{
			"containers": [{"class_name": "Box", "image": "./Dockerfile"}],
			"migrations": [{"tag": "v1", "new_sqlite_classes": ["Box"]}]}`,
			[]string{"Other"},
			[]string{"containers[0].class_name", `class "Box" is not exported`}},
		{"migrated class not exported", `{
			"migrations": [{"tag": "v1", "new_sqlite_classes": ["Gone"]}]}`,
			nil,
			[]string{"migrations", `migration "v1"`, `class "Gone" is not exported`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(parseConfig(t, tc.config), tc.exported)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
