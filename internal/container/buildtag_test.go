package container

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestContentTagFollowsInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "FROM scratch\nCOPY app /app\n")
	write("app", "v1")
	spec := BuildSpec{ContextDir: dir, Dockerfile: "Dockerfile", Args: map[string]string{"A": "1"}}

	tag := func() string {
		t.Helper()
		got, err := ContentTag("Berth-Dev/App", spec)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	first := tag()
	if !strings.HasPrefix(first, "berth-dev/app:") {
		t.Fatalf("tag %q: want repo lower-cased", first)
	}
	if again := tag(); again != first {
		t.Fatalf("unchanged inputs gave %q then %q", first, again)
	}
	write("app", "v2")
	changedFile := tag()
	if changedFile == first {
		t.Fatal("changing a context file kept the tag")
	}
	spec.Args["A"] = "2"
	if tag() == changedFile {
		t.Fatal("changing a build arg kept the tag")
	}
}

func TestContentTagMissingDockerfile(t *testing.T) {
	_, err := ContentTag("x", BuildSpec{ContextDir: t.TempDir(), Dockerfile: "Dockerfile"})
	if err == nil || !strings.Contains(err.Error(), "Dockerfile") {
		t.Fatalf("err = %v, want one naming the Dockerfile", err)
	}
}
