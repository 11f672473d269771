// Package bundle turns a Worker project's entry file into one ES module, the
// way wrangler does: esbuild, ESM output, target es2022, platform neutral,
// the workerd/worker/browser export conditions, TypeScript and JSX, imports
// resolved from the project's node_modules, and an inline source map.
//
// Modules the runtime provides itself (cloudflare:workers and the other
// built-ins berth offers) stay external imports; the runtime's module loader
// serves them. Any other import that cannot be resolved, including a
// cloudflare:* or node:* module berth does not offer, fails the bundle with
// an error that names the module and the importing file.
package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

// Options describe one bundle.
type Options struct {
	// Entry is the Worker's main module (the config's "main"), absolute or
	// relative to Dir.
	Entry string
	// Dir is the project directory; relative paths and error messages are
	// relative to it. Defaults to the entry's directory.
	Dir string
	// Builtins are the module specifiers the runtime serves, such as
	// "cloudflare:workers". They are left as imports in the output.
	Builtins []string
	// Define replaces global identifiers with constant expressions.
	Define map[string]string
	// Minify shrinks the output (source maps still point at the originals).
	Minify bool
}

// Result is a bundled Worker.
type Result struct {
	// Code is the ES module, with the source map inlined as a data: URL.
	Code string
	// SourceMap is the same source map as JSON, for mapping stack traces
	// without decoding the inline copy.
	SourceMap string
	// Inputs are the files that went into the bundle, relative to Dir.
	Inputs []string
}

// ErrBundle is wrapped by every error caused by the project's code (as
// opposed to bad options).
var ErrBundle = errors.New("bundle failed")

// Problem is one error esbuild or berth found in the project.
type Problem struct {
	File   string // relative to Dir; empty when not tied to a file
	Line   int    // 1-based
	Column int    // 0-based
	Text   string
}

func (p Problem) String() string {
	if p.File == "" {
		return p.Text
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Text)
}

// Error lists what made a bundle fail.
type Error struct {
	Entry    string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bundle %s: ", e.Entry)
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return ErrBundle }

// Build bundles opts.Entry.
func Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.Entry == "" {
		return nil, fmt.Errorf("bundle: no entry module given")
	}
	dir := opts.Dir
	entry := opts.Entry
	if dir == "" {
		abs, err := filepath.Abs(entry)
		if err != nil {
			return nil, fmt.Errorf("bundle: entry %q: %w", entry, err)
		}
		dir = filepath.Dir(abs)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle: project directory %q: %w", opts.Dir, err)
	}
	if !filepath.IsAbs(entry) {
		entry = filepath.Join(dir, entry)
	}
	if _, err := os.Stat(entry); err != nil {
		return nil, fmt.Errorf("bundle: entry module %q: %w", opts.Entry, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	builtins := map[string]bool{}
	for _, b := range opts.Builtins {
		builtins[b] = true
	}
	res := api.Build(api.BuildOptions{
		EntryPoints:       []string{entry},
		AbsWorkingDir:     dir,
		Bundle:            true,
		Write:             false,
		Outfile:           filepath.Join(dir, "worker.js"),
		Format:            api.FormatESModule,
		Target:            api.ES2022,
		Platform:          api.PlatformNeutral,
		Conditions:        []string{"workerd", "worker", "browser"},
		MainFields:        []string{"browser", "module", "main"},
		ResolveExtensions: []string{".tsx", ".ts", ".jsx", ".mjs", ".js", ".json"},
		Loader: map[string]api.Loader{
			".js": api.LoaderJSX, ".mjs": api.LoaderJS, ".cjs": api.LoaderJS,
			".ts": api.LoaderTS, ".mts": api.LoaderTS, ".cts": api.LoaderTS, ".tsx": api.LoaderTSX, ".jsx": api.LoaderJSX,
			".txt": api.LoaderText, ".html": api.LoaderText, ".bin": api.LoaderBinary, ".wasm": api.LoaderBinary,
		},
		Sourcemap:         api.SourceMapInlineAndExternal,
		SourcesContent:    api.SourcesContentInclude,
		KeepNames:         true,
		Define:            opts.Define,
		MinifySyntax:      opts.Minify,
		MinifyWhitespace:  opts.Minify,
		MinifyIdentifiers: opts.Minify,
		LogLevel:          api.LogLevelSilent,
		Metafile:          true,
		Plugins:           []api.Plugin{builtinPlugin(builtins)},
	})
	if len(res.Errors) > 0 {
		return nil, bundleError(opts.Entry, dir, res.Errors)
	}
	out := &Result{}
	for _, f := range res.OutputFiles {
		switch {
		case strings.HasSuffix(f.Path, ".map"):
			out.SourceMap = string(f.Contents)
		case strings.HasSuffix(f.Path, ".js"):
			out.Code = string(f.Contents)
		}
	}
	if out.Code == "" {
		return nil, fmt.Errorf("bundle %s: esbuild produced no JavaScript output", opts.Entry)
	}
	out.Inputs = inputs(res.Metafile)
	return out, nil
}

// builtinPlugin keeps the runtime's own modules external and rejects the
// runtime-namespaced ones it does not have, naming the importer.
func builtinPlugin(builtins map[string]bool) api.Plugin {
	return api.Plugin{
		Name: "berth-builtins",
		Setup: func(b api.PluginBuild) {
			b.OnResolve(api.OnResolveOptions{Filter: `^(cloudflare|node|workerd):`}, func(args api.OnResolveArgs) (api.OnResolveResult, error) {
				if builtins[args.Path] {
					return api.OnResolveResult{Path: args.Path, External: true}, nil
				}
				return api.OnResolveResult{}, fmt.Errorf("module %q is not provided by berth", args.Path)
			})
		},
	}
}

var couldNotResolve = regexp.MustCompile(`^Could not resolve "([^"]+)"`)

func bundleError(entry, dir string, msgs []api.Message) error {
	e := &Error{Entry: entry}
	for _, m := range msgs {
		p := Problem{Text: m.Text}
		if m.Location != nil {
			p.File = relPath(dir, m.Location.File)
			p.Line = m.Location.Line
			p.Column = m.Location.Column
		}
		if mm := couldNotResolve.FindStringSubmatch(m.Text); mm != nil {
			p.Text = fmt.Sprintf("cannot resolve import %q", mm[1])
			if p.File != "" {
				p.Text += " (imported by " + p.File + ")"
			}
		} else if strings.HasPrefix(m.Text, "module ") && p.File != "" {
			p.Text += " (imported by " + p.File + ")"
		}
		e.Problems = append(e.Problems, p)
	}
	return e
}

func relPath(dir, file string) string {
	if !filepath.IsAbs(file) {
		return filepath.ToSlash(file)
	}
	if r, err := filepath.Rel(dir, file); err == nil {
		return filepath.ToSlash(r)
	}
	return file
}

// inputs lists the input files recorded in esbuild's metafile.
func inputs(meta string) []string {
	var m struct {
		Inputs map[string]json.RawMessage `json:"inputs"`
	}
	if err := json.Unmarshal([]byte(meta), &m); err != nil {
		return nil
	}
	names := make([]string, 0, len(m.Inputs))
	for name := range m.Inputs {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
