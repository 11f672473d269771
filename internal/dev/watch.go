package dev

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/berth-dev/berth/internal/config"
)

// settle is how long the sources must stay quiet before a rebuild: editors
// write a file in several steps.
const settle = 100 * time.Millisecond

// watch rebuilds whenever a file of the bundle or the config changes, until
// ctx ends. A failed rebuild is printed and the last good version keeps
// serving.
func (s *Server) watch(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Error("watch sources: rebuilds are off", "err", err)
		return
	}
	defer w.Close()
	watched := map[string]bool{}
	addDirs := func() {
		for _, dir := range s.watchDirs() {
			if watched[dir] {
				continue
			}
			if err := w.Add(dir); err != nil {
				s.log.Warn("watch sources", "dir", dir, "err", err)
				continue
			}
			watched[dir] = true
		}
	}
	addDirs()

	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-w.Errors:
			s.log.Warn("watch sources", "err", err)
		case ev := <-w.Events:
			if s.relevant(ev.Name) {
				timer = time.After(settle)
			}
		case <-timer:
			timer = nil
			s.rebuild(ctx)
			addDirs()
		}
	}
}

func (s *Server) rebuild(ctx context.Context) {
	start := time.Now()
	cfg, err := config.Load(s.cfg.Path)
	if err != nil {
		fmt.Fprintf(s.opts.Out, "✘ Rebuild failed, still serving the last good version:\n%v\n", err)
		return
	}
	s.cfg = cfg
	w, err := s.build(ctx)
	if err != nil {
		fmt.Fprintf(s.opts.Out, "✘ Rebuild failed, still serving the last good version:\n%v\n", err)
		return
	}
	s.swap(w)
	fmt.Fprintf(s.opts.Out, "Reloaded in %v\n", time.Since(start).Round(time.Millisecond))
}

// watchDirs are the directories holding the bundle's own sources (not
// node_modules) and the config.
func (s *Server) watchDirs() []string {
	dirs := []string{filepath.Dir(s.cfg.Path)}
	for _, in := range s.inputs {
		if strings.Contains(in, string(filepath.Separator)+"node_modules"+string(filepath.Separator)) {
			continue
		}
		if dir := filepath.Dir(in); !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// relevant reports whether a change to path can change the build.
func (s *Server) relevant(path string) bool {
	if path == s.cfg.Path || slices.Contains(s.inputs, path) {
		return true
	}
	base := filepath.Base(path)
	if base == ".dev.vars" || base == ".env" {
		return true
	}
	// A new source file is relevant once something imports it, and the
	// importer changes too; editors' swap and backup files never are.
	switch filepath.Ext(base) {
	case ".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx", ".json":
		return !strings.HasPrefix(base, ".")
	}
	return false
}
