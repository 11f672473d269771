package fake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/container"
)

// Build interprets a Dockerfile. It understands FROM (scratch or an image
// this runtime built), ARG, ENV, LABEL, EXPOSE, WORKDIR, USER, COPY (it
// records the paths, never the contents), ENTRYPOINT, CMD and RUN (the
// program is run through the registered Programs, so it must have been
// COPYed in). Other instructions fail the build with an error naming them.
func (rt *Runtime) Build(ctx context.Context, spec container.BuildSpec) (container.Image, error) {
	if spec.ContextDir == "" {
		return container.Image{}, fmt.Errorf("build: %w: no context directory", container.ErrInvalid)
	}
	if st, err := os.Stat(spec.ContextDir); err != nil || !st.IsDir() {
		return container.Image{}, fmt.Errorf("build: context directory %q: %w: not a directory", spec.ContextDir, container.ErrInvalid)
	}
	dockerfile := spec.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(spec.ContextDir, dockerfile)
	}
	text, err := os.ReadFile(dockerfile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return container.Image{}, fmt.Errorf("build: dockerfile %q: %w: no such file", dockerfile, container.ErrInvalid)
		}
		return container.Image{}, fmt.Errorf("build: dockerfile %q: %w: %v", dockerfile, container.ErrInvalid, err)
	}
	steps := parseDockerfile(string(text))
	progress := spec.Progress
	if progress == nil {
		progress = io.Discard
	}
	b := &builder{rt: rt, ctx: ctx, spec: spec, progress: progress, usedArgs: map[string]bool{}, globalArgs: map[string]string{}}
	for i, st := range steps {
		fmt.Fprintf(progress, "Step %d/%d : %s %s\n", i+1, len(steps), st.instruction, st.args)
		if err := b.step(st); err != nil {
			return container.Image{}, fmt.Errorf("build: dockerfile %q line %d: %s: %w", dockerfile, st.line, st.instruction, err)
		}
	}
	if b.img == nil {
		return container.Image{}, fmt.Errorf("build: dockerfile %q: %w: no FROM instruction", dockerfile, container.ErrInvalid)
	}
	var unused []string
	for k := range spec.Args {
		if !b.usedArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		fmt.Fprintf(progress, "[Warning] One or more build-args %v were not consumed\n", unused)
	}
	for k, v := range spec.Labels {
		b.img.labels[k] = v
	}
	b.img.created = rt.now()
	rt.mu.Lock()
	rt.addImage(b.img, spec.Tag)
	pub := b.img.public()
	rt.mu.Unlock()
	fmt.Fprintf(progress, "Successfully built %s\n", shortID(pub.ID))
	if spec.Tag != "" {
		fmt.Fprintf(progress, "Successfully tagged %s\n", normalizeRef(spec.Tag))
	}
	return pub, nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

type step struct {
	line        int
	instruction string // upper case
	args        string
}

// parseDockerfile splits a Dockerfile into instructions, joining
// continuation lines and dropping comments.
func parseDockerfile(text string) []step {
	var steps []step
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimRight(raw, " \t\r")
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 {
			if trimmed == "" || strings.HasPrefix(trimmed, "#") {
				continue
			}
			start = i + 1
		} else if strings.HasPrefix(trimmed, "#") {
			continue // comments inside a continued instruction are dropped
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		full := strings.TrimSpace(cur.String())
		cur.Reset()
		instr, args, _ := strings.Cut(full, " ")
		steps = append(steps, step{line: start, instruction: strings.ToUpper(instr), args: strings.TrimSpace(args)})
	}
	if cur.Len() > 0 {
		full := strings.TrimSpace(cur.String())
		instr, args, _ := strings.Cut(full, " ")
		steps = append(steps, step{line: start, instruction: strings.ToUpper(instr), args: strings.TrimSpace(args)})
	}
	return steps
}

type builder struct {
	rt       *Runtime
	ctx      context.Context
	spec     container.BuildSpec
	progress io.Writer

	img *image
	// cmdInherited is set while the CMD came from the base image, which a
	// later ENTRYPOINT resets, as in Docker.
	cmdInherited bool
	globalArgs   map[string]string // ARGs before FROM, for FROM only
	args         map[string]string // ARGs declared in the stage
	usedArgs     map[string]bool
}

func (b *builder) step(st step) error {
	if b.img == nil && st.instruction != "FROM" && st.instruction != "ARG" {
		return fmt.Errorf("%w: %s before FROM", container.ErrInvalid, st.instruction)
	}
	switch st.instruction {
	case "FROM":
		return b.from(st.args)
	case "ARG":
		return b.arg(st.args)
	case "ENV":
		return b.keyValues(st.args, func(k, v string) { b.img.setEnv(k, v) })
	case "LABEL":
		return b.keyValues(st.args, func(k, v string) { b.img.labels[k] = v })
	case "EXPOSE":
		return b.expose(st.args)
	case "WORKDIR":
		dir, err := b.expandOne(st.args)
		if err != nil {
			return err
		}
		if !path.IsAbs(dir) {
			dir = path.Join(b.workDir(), dir)
		}
		b.img.workDir = path.Clean(dir)
		b.addDir(b.img.workDir)
		return nil
	case "USER":
		user, err := b.expandOne(st.args)
		b.img.user = user
		return err
	case "COPY":
		return b.copy(st.args)
	case "ENTRYPOINT":
		b.img.entrypoint = commandForm(st.args)
		if b.cmdInherited {
			b.img.cmd = nil
		}
		return nil
	case "CMD":
		b.img.cmd = commandForm(st.args)
		b.cmdInherited = false
		return nil
	case "RUN":
		return b.run(st.args)
	case "ADD", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "ONBUILD", "MAINTAINER":
		return fmt.Errorf("%w: instruction %s is not supported by the fake runtime", container.ErrBuildFailed, st.instruction)
	}
	return fmt.Errorf("%w: unknown instruction %q", container.ErrInvalid, st.instruction)
}

func (b *builder) from(args string) error {
	if b.img != nil {
		return fmt.Errorf("%w: multi-stage builds are not supported by the fake runtime", container.ErrBuildFailed)
	}
	words, err := b.words(args, b.globalArgs)
	if err != nil {
		return err
	}
	words = slices.DeleteFunc(words, func(w string) bool { return strings.HasPrefix(w, "--") })
	if len(words) != 1 && !(len(words) == 3 && strings.EqualFold(words[1], "AS")) {
		return fmt.Errorf("%w: want FROM IMAGE [AS NAME], got %q", container.ErrInvalid, args)
	}
	b.args = map[string]string{}
	if words[0] == "scratch" {
		b.img = &image{labels: map[string]string{}, files: map[string]bool{}, dirs: map[string]bool{"/": true}}
		return nil
	}
	b.rt.mu.Lock()
	base := b.rt.lookupImage(words[0])
	if base != nil {
		base = base.clone()
	}
	b.rt.mu.Unlock()
	if base == nil {
		return fmt.Errorf("base image %q: %w: %w", words[0], container.ErrBuildFailed, container.ErrImageNotFound)
	}
	b.img = base
	b.cmdInherited = base.cmd != nil
	return nil
}

func (b *builder) arg(args string) error {
	words, err := b.words(args, b.vars())
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return fmt.Errorf("%w: ARG needs a name", container.ErrInvalid)
	}
	for _, w := range words {
		name, def, hasDefault := strings.Cut(w, "=")
		if name == "" {
			return fmt.Errorf("%w: ARG %q has no name", container.ErrInvalid, w)
		}
		value, fromBuild := b.spec.Args[name]
		if fromBuild {
			b.usedArgs[name] = true
		}
		target := b.args
		if b.img == nil {
			target = b.globalArgs
		}
		switch {
		case fromBuild:
			target[name] = value
		case hasDefault:
			target[name] = def
		default:
			if g, ok := b.globalArgs[name]; ok && b.img != nil {
				target[name] = g
			}
		}
	}
	return nil
}

// vars are the values $NAME expands to: the stage's ARGs, overridden by
// ENV, as in Docker.
func (b *builder) vars() map[string]string {
	v := map[string]string{}
	if b.img == nil {
		for k, val := range b.globalArgs {
			v[k] = val
		}
		return v
	}
	for k, val := range b.args {
		v[k] = val
	}
	for _, kv := range b.img.env {
		k, val, _ := strings.Cut(kv, "=")
		v[k] = val
	}
	return v
}

func (b *builder) keyValues(args string, set func(k, v string)) error {
	words, err := b.words(args, b.vars())
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return fmt.Errorf("%w: want KEY=value", container.ErrInvalid)
	}
	if !strings.Contains(words[0], "=") {
		// The legacy form: KEY value with spaces.
		set(words[0], strings.Join(words[1:], " "))
		return nil
	}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return fmt.Errorf("%w: %q is not KEY=value", container.ErrInvalid, w)
		}
		set(k, v)
	}
	return nil
}

func (b *builder) expose(args string) error {
	words, err := b.words(args, b.vars())
	if err != nil {
		return err
	}
	for _, w := range words {
		portText, proto, _ := strings.Cut(w, "/")
		port, err := strconv.Atoi(portText)
		if err != nil || port < 1 || port > 65535 {
			return fmt.Errorf("%w: port %q: want 1-65535[/tcp|/udp]", container.ErrInvalid, w)
		}
		if proto != "" && proto != "tcp" {
			continue // ExposedPorts lists TCP ports only
		}
		if !slices.Contains(b.img.exposed, port) {
			b.img.exposed = append(b.img.exposed, port)
			slices.Sort(b.img.exposed)
		}
	}
	return nil
}

func (b *builder) workDir() string {
	if b.img.workDir == "" {
		return "/"
	}
	return b.img.workDir
}

func (b *builder) addDir(dir string) {
	for d := path.Clean(dir); ; d = path.Dir(d) {
		b.img.dirs[d] = true
		if d == "/" {
			return
		}
	}
}

func (b *builder) copy(args string) error {
	words, err := b.words(args, b.vars())
	if err != nil {
		return err
	}
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		if strings.HasPrefix(words[0], "--from") {
			return fmt.Errorf("%w: COPY --from is not supported by the fake runtime", container.ErrBuildFailed)
		}
		words = words[1:] // --chown, --chmod: ownership is not modelled
	}
	if len(words) < 2 {
		return fmt.Errorf("%w: want COPY SRC... DEST", container.ErrInvalid)
	}
	srcs, dest := words[:len(words)-1], words[len(words)-1]
	if !path.IsAbs(dest) {
		dest = path.Join(b.workDir(), dest)
	}
	intoDir := len(srcs) > 1 || strings.HasSuffix(dest, "/")
	dest = path.Clean(dest)
	for _, src := range srcs {
		clean := filepath.Clean(filepath.FromSlash(src))
		if filepath.IsAbs(clean) {
			clean = strings.TrimPrefix(clean, string(filepath.Separator))
		}
		if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
			return fmt.Errorf("%w: COPY source %q is outside the build context", container.ErrBuildFailed, src)
		}
		matches, err := filepath.Glob(filepath.Join(b.spec.ContextDir, clean))
		if err != nil || len(matches) == 0 {
			return fmt.Errorf("%w: COPY source %q: file not found in build context", container.ErrBuildFailed, src)
		}
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil {
				return fmt.Errorf("%w: COPY source %q: %v", container.ErrBuildFailed, src, err)
			}
			switch {
			case st.IsDir():
				if err := b.copyDir(m, dest); err != nil {
					return err
				}
			case intoDir || len(matches) > 1 || b.img.dirs[dest]:
				b.addFile(path.Join(dest, filepath.Base(m)))
			default:
				b.addFile(dest)
			}
		}
	}
	return nil
}

func (b *builder) copyDir(src, dest string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%w: COPY: %v", container.ErrBuildFailed, err)
		}
		rel, _ := filepath.Rel(src, p)
		target := path.Join(dest, filepath.ToSlash(rel))
		if d.IsDir() {
			b.addDir(target)
		} else {
			b.addFile(target)
		}
		return nil
	})
}

func (b *builder) addFile(p string) {
	b.img.files[p] = true
	b.addDir(path.Dir(p))
}

// run executes a RUN step with the registered Program for its executable.
// ARGs are in its environment, as in Docker.
func (b *builder) run(args string) error {
	if strings.HasPrefix(args, "--") {
		return fmt.Errorf("%w: RUN flags are not supported by the fake runtime", container.ErrBuildFailed)
	}
	argv := commandForm(args)
	env := slices.Clone(b.img.env)
	for k, v := range b.args {
		if _, ok := lookupEnv(env, k); !ok {
			env = append(env, k+"="+v)
		}
	}
	if _, ok := lookupEnv(env, "PATH"); !ok {
		env = append(env, "PATH="+defaultPath)
	}
	prog, _, err := b.rt.findProgram(b.img, argv[0], env, b.workDir())
	if err != nil {
		return fmt.Errorf("%w: %v: %w", container.ErrBuildFailed, argv, err)
	}
	var output bytes.Buffer
	out := &syncWriter{w: io.MultiWriter(&output, b.progress)}
	uid, err := parseUser(b.img.user)
	if err != nil {
		return fmt.Errorf("%w: %w", container.ErrBuildFailed, err)
	}
	sys := &system{
		args:   argv,
		env:    env,
		pid:    1, // each step runs in a container of its own
		stdin:  strings.NewReader(""),
		stdout: out,
		stderr: out,
		// A RUN step cannot be signalled, but it must be able to wait on
		// its channel.
		signals: make(chan os.Signal),
		listen: func(network, addr string) (net.Listener, error) {
			return nil, fmt.Errorf("listen %s %s: listening in a RUN step is not supported by the fake runtime", network, addr)
		},
		alloc:    func(int) error { return nil },
		network:  networkFor(true),
		hostname: "buildkitsandbox",
		workDir:  b.workDir(),
		uid:      uid,
	}
	if code := prog(b.ctx, sys); code != 0 {
		return fmt.Errorf("%w: %v returned a non-zero code: %d: %s", container.ErrBuildFailed, argv, code, strings.TrimSpace(output.String()))
	}
	if err := b.ctx.Err(); err != nil {
		return err
	}
	return nil
}

// commandForm parses ENTRYPOINT, CMD and RUN arguments: a JSON array is the
// exec form, anything else the shell form, run by /bin/sh -c.
func commandForm(args string) []string {
	if strings.HasPrefix(args, "[") {
		var argv []string
		if json.Unmarshal([]byte(args), &argv) == nil && len(argv) > 0 {
			return argv
		}
	}
	return []string{"/bin/sh", "-c", args}
}

func (b *builder) expandOne(args string) (string, error) {
	words, err := b.words(args, b.vars())
	if err != nil {
		return "", err
	}
	if len(words) != 1 {
		return "", fmt.Errorf("%w: want exactly one value, got %q", container.ErrInvalid, args)
	}
	return words[0], nil
}

// words splits s into words as Docker's shell lexer does for ENV, LABEL,
// ARG and the like: whitespace separates words except inside quotes,
// backslash escapes, and $NAME, ${NAME}, ${NAME:-word} and ${NAME:+word}
// expand from vars except inside single quotes.
func (b *builder) words(s string, vars map[string]string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote == 0 && (r == ' ' || r == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
			continue
		case r == '\\' && quote != '\'' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
		case (r == '"' || r == '\'') && quote == 0:
			quote = r
		case r == quote:
			quote = 0
		case r == '$' && quote != '\'':
			value, n, err := expandVar(rs[i+1:], vars)
			if err != nil {
				return nil, err
			}
			cur.WriteString(value)
			i += n
		default:
			cur.WriteRune(r)
		}
		inWord = true
	}
	if quote != 0 {
		return nil, fmt.Errorf("%w: unterminated quote in %q", container.ErrInvalid, s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// expandVar expands the variable reference after a '$' and returns its
// value and how many runes it used.
func expandVar(rs []rune, vars map[string]string) (string, int, error) {
	isName := func(r rune) bool {
		return r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
	}
	if len(rs) > 0 && rs[0] == '{' {
		end := slices.Index(rs, '}')
		if end < 0 {
			return "", 0, fmt.Errorf("%w: missing '}' in ${%s", container.ErrInvalid, string(rs[1:]))
		}
		inner := string(rs[1:end])
		name, word, op := inner, "", ""
		if i := strings.Index(inner, ":"); i >= 0 && i+1 < len(inner) && (inner[i+1] == '-' || inner[i+1] == '+') {
			name, op, word = inner[:i], inner[i:i+2], inner[i+2:]
		}
		value, set := vars[name]
		switch {
		case op == ":-" && value == "":
			value = word
		case op == ":+" && value != "":
			value = word
		case op == ":+":
			value = ""
		case !set:
			value = ""
		}
		return value, end + 1, nil
	}
	n := 0
	for n < len(rs) && isName(rs[n]) {
		n++
	}
	if n == 0 {
		return "$", 0, nil
	}
	return vars[string(rs[:n])], n, nil
}
