package testutil

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// CopyTree copies the regular files under src to dst, as a test copies a
// project before running it. It leaves out node_modules and .berth
// directories (installed packages and berth's state from a local run) and
// the paths in skip, relative to src.
func CopyTree(src, dst string, skip ...string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if (d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".berth")) || slices.Contains(skip, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}
