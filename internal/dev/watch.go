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

// sourceWatch rebuilds whenever a file of the bundle or the config changes.
// A failed rebuild is printed and the last good version keeps serving.
type sourceWatch struct {
	s       *Server
	w       *fsnotify.Watcher
	watched map[string]bool
}

// startWatch watches the current sources; run then handles their changes.
func (s *Server) startWatch() (*sourceWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	sw := &sourceWatch{s: s, w: w, watched: map[string]bool{}}
	sw.addDirs()
	return sw, nil
}

// addDirs watches the source directories not yet watched; a rebuild may
// have brought new ones.
func (sw *sourceWatch) addDirs() {
	for _, dir := range sw.s.watchDirs() {
		if sw.watched[dir] {
			continue
		}
		if err := sw.w.Add(dir); err != nil {
			sw.s.log.Warn("watch sources", "dir", dir, "err", err)
			continue
		}
		sw.watched[dir] = true
	}
}

// run rebuilds on changes until ctx ends.
func (sw *sourceWatch) run(ctx context.Context) {
	defer sw.w.Close()
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-sw.w.Errors:
			sw.s.log.Warn("watch sources", "err", err)
		case ev := <-sw.w.Events:
			if sw.s.relevant(ev.Name) {
				timer = time.After(settle)
			}
		case <-timer:
			timer = nil
			sw.s.rebuild(ctx)
			sw.addDirs()
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
