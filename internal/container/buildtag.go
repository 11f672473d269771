package container

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ContentTag returns an image tag "repo:digest" whose digest covers every file
// of the build context (names, modes and contents), the Dockerfile and the
// build args. Two builds of unchanged inputs get the same tag, so a caller can
// skip the build when Resolve finds the tag locally.
func ContentTag(repo string, spec BuildSpec) (string, error) {
	h := sha256.New()
	dockerfile := spec.Dockerfile
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(spec.ContextDir, dockerfile)
	}
	if err := hashFile(h, "Dockerfile", dockerfile); err != nil {
		return "", fmt.Errorf("hash build inputs: %w", err)
	}
	keys := make([]string, 0, len(spec.Args))
	for k := range spec.Args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "arg %q=%q\n", k, spec.Args[k])
	}
	err := filepath.WalkDir(spec.ContextDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(spec.ContextDir, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			fmt.Fprintf(h, "entry %q %v\n", rel, info.Mode())
			return nil
		}
		return hashFile(h, rel, path)
	})
	if err != nil {
		return "", fmt.Errorf("hash build context %q: %w", spec.ContextDir, err)
	}
	return strings.ToLower(repo) + ":" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

func hashFile(h io.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	fmt.Fprintf(h, "file %q %v %d\n", name, info.Mode(), info.Size())
	_, err = io.Copy(h, f)
	return err
}
