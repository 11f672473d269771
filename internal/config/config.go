// Package config reads a project's wrangler.jsonc, wrangler.json or
// wrangler.toml with Cloudflare's keys. Errors name the file, the line and the
// key; keys berth does not know are reported as warnings, as wrangler does.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/tailscale/hujson"

	"github.com/berth-dev/berth/internal/container"
)

// FileNames are the config files berth looks for, in wrangler's order.
var FileNames = []string{"wrangler.jsonc", "wrangler.json", "wrangler.toml"}

// ErrNotFound is returned by Find when a directory holds no config file.
var ErrNotFound = errors.New("no wrangler.jsonc, wrangler.json or wrangler.toml")

// Config is a project's configuration.
type Config struct {
	// Path is the file the config was read from; Dir is its directory, which
	// relative paths in the config are taken from.
	Path string `json:"-"`
	Dir  string `json:"-"`
	// Warnings are problems that do not stop berth, such as unknown keys.
	Warnings []string `json:"-"`

	Name               string         `json:"name"`
	Main               string         `json:"main"`
	CompatibilityDate  string         `json:"compatibility_date"`
	CompatibilityFlags []string       `json:"compatibility_flags"`
	Vars               map[string]any `json:"vars"`
	DurableObjects     DurableObjects `json:"durable_objects"`
	Migrations         []Migration    `json:"migrations"`
	// Exports is the newer alternative to Migrations.
	Exports    map[string]Export `json:"exports"`
	Containers []Container       `json:"containers"`
	Limits     Limits            `json:"limits"`
	Dev        Dev               `json:"dev"`
}

// DurableObjects is the durable_objects section.
type DurableObjects struct {
	Bindings []DurableObjectBinding `json:"bindings"`
}

// DurableObjectBinding binds a Durable Object class to a name in env.
type DurableObjectBinding struct {
	Name        string `json:"name"`
	ClassName   string `json:"class_name"`
	ScriptName  string `json:"script_name"`
	Environment string `json:"environment"`
}

// Migration is one entry of migrations.
type Migration struct {
	Tag                string             `json:"tag"`
	NewClasses         []string           `json:"new_classes"`
	NewSqliteClasses   []string           `json:"new_sqlite_classes"`
	RenamedClasses     []RenamedClass     `json:"renamed_classes"`
	DeletedClasses     []string           `json:"deleted_classes"`
	TransferredClasses []TransferredClass `json:"transferred_classes"`
}

// RenamedClass is an entry of renamed_classes.
type RenamedClass struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// TransferredClass is an entry of transferred_classes.
type TransferredClass struct {
	From       string `json:"from"`
	FromScript string `json:"from_script"`
	To         string `json:"to"`
}

// Export is an entry of the top-level exports map.
type Export struct {
	Type      string `json:"type"`
	Storage   string `json:"storage"`
	Container string `json:"container"`
	State     string `json:"state"`
}

// Container is one entry of containers.
type Container struct {
	ClassName         string            `json:"class_name"`
	Name              string            `json:"name"`
	Image             string            `json:"image"`
	ImageBuildContext string            `json:"image_build_context"`
	ImageVars         map[string]string `json:"image_vars"`
	InstanceType      InstanceType      `json:"instance_type"`
	// MaxInstances is nil when the key is absent; see MaxInstancesOrDefault.
	MaxInstances     *int   `json:"max_instances"`
	SchedulingPolicy string `json:"scheduling_policy"`
}

// DefaultMaxInstances is Cloudflare's deploy default.
const DefaultMaxInstances = 20

// MaxInstancesOrDefault returns max_instances, or 20 when it is absent.
func (c Container) MaxInstancesOrDefault() int {
	if c.MaxInstances == nil {
		return DefaultMaxInstances
	}
	return *c.MaxInstances
}

// InstanceType is a named instance type ("lite", "standard-1", …) or a custom
// {vcpu, memory_mib, disk_mb}.
type InstanceType struct {
	Name      string
	VCPU      float64
	MemoryMiB int64
	DiskMB    int64
}

// UnmarshalJSON accepts a string or an object.
func (t *InstanceType) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &t.Name)
	}
	var custom struct {
		VCPU      float64 `json:"vcpu"`
		MemoryMiB int64   `json:"memory_mib"`
		DiskMB    int64   `json:"disk_mb"`
	}
	if err := json.Unmarshal(b, &custom); err != nil {
		return fmt.Errorf("want a type name or {vcpu, memory_mib, disk_mb}: %w", err)
	}
	*t = InstanceType{Name: "custom", VCPU: custom.VCPU, MemoryMiB: custom.MemoryMiB, DiskMB: custom.DiskMB}
	return nil
}

// Resolve returns the container instance type; an absent one is the default.
func (t InstanceType) Resolve() (container.InstanceType, error) {
	switch t.Name {
	case "":
		return container.LookupInstanceType(container.DefaultInstanceType)
	case "custom":
		return container.CustomInstanceType(t.VCPU, t.MemoryMiB, t.DiskMB)
	}
	return container.LookupInstanceType(t.Name)
}

// Limits is the limits section.
type Limits struct {
	CPUMs int64 `json:"cpu_ms"`
}

// Dev is the dev section: defaults for `berth dev` flags.
type Dev struct {
	IP               string          `json:"ip"`
	Port             int             `json:"port"`
	EnableContainers *bool           `json:"enable_containers"`
	ContainerEngine  ContainerEngine `json:"container_engine"`
}

// ContainerEngine is dev.container_engine: the socket of the Docker engine
// that runs the containers, given as a string ("unix:///var/run/docker.sock")
// or as {localDocker: {socketPath}}. Empty means the environment decides.
type ContainerEngine struct {
	Socket string
	// invalid is a value of neither form, which validation reports with
	// its key (an error from UnmarshalJSON would not name it).
	invalid string
}

// EngineHost returns socket as the engine address the Docker client takes:
// unix:// or tcp:// as given, a bare absolute path as a unix socket.
func EngineHost(socket string) (string, error) {
	if strings.HasPrefix(socket, "/") {
		return "unix://" + socket, nil
	}
	u, err := url.Parse(socket)
	if err != nil || (u.Scheme != "unix" && u.Scheme != "tcp") || (u.Scheme == "unix" && u.Path == "") || (u.Scheme == "tcp" && u.Host == "") {
		return "", fmt.Errorf("%q: want unix:///path/to/docker.sock, tcp://host:port or an absolute socket path", socket)
	}
	return socket, nil
}

// UnmarshalJSON accepts both of wrangler's forms.
func (e *ContainerEngine) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &e.Socket)
	}
	var local struct {
		LocalDocker *struct {
			SocketPath string `json:"socketPath"`
		} `json:"localDocker"`
	}
	if err := json.Unmarshal(b, &local); err != nil || local.LocalDocker == nil {
		e.invalid = string(b)
		return nil
	}
	e.Socket = local.LocalDocker.SocketPath
	return nil
}

// Find returns the config file in dir, trying FileNames in order.
func Find(dir string) (string, error) {
	for _, name := range FileNames {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s: %w", dir, ErrNotFound)
}

// Load reads and validates the config file at path.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, raw)
}

// Parse decodes and validates a config; path names it in errors and decides
// the format by its extension.
func Parse(path string, raw []byte) (*Config, error) {
	src := &source{path: path, raw: raw}
	var (
		jsonDoc []byte
		err     error
	)
	if strings.EqualFold(filepath.Ext(path), ".toml") {
		jsonDoc, err = src.fromTOML()
	} else {
		jsonDoc, err = src.fromJSONC()
	}
	if err != nil {
		return nil, err
	}
	cfg := &Config{Path: path, Dir: filepath.Dir(path)}
	if err := json.Unmarshal(jsonDoc, cfg); err != nil {
		return nil, src.decodeError(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(jsonDoc, &generic); err != nil {
		return nil, src.errorf("", "%v", err)
	}
	cfg.Warnings = unknownKeys(generic)
	if err := cfg.validate(src); err != nil {
		return nil, err
	}
	return cfg, nil
}

// source is the text of a config file, for locating keys in errors.
type source struct {
	path string
	raw  []byte
	// lines maps a key path ("containers[0].image") to its 1-based line.
	lines map[string]int
}

// Error is a problem in a config file.
type Error struct {
	Path string // the file
	Line int    // 0 when unknown
	Key  string // e.g. containers[0].instance_type; empty for syntax errors
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

func (s *source) errorf(key, format string, args ...any) error {
	return &Error{Path: s.path, Line: s.lineOf(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// lineOf finds the line of key, or of its closest enclosing key.
func (s *source) lineOf(key string) int {
	for key != "" {
		if line, ok := s.lines[key]; ok {
			return line
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

func (s *source) lineAt(offset int) int {
	return bytes.Count(s.raw[:min(offset, len(s.raw))], []byte("\n")) + 1
}

func (s *source) fromJSONC() ([]byte, error) {
	v, err := hujson.Parse(s.raw)
	if err != nil {
		return nil, &Error{Path: s.path, Line: s.syntaxLine(err), Msg: "syntax: " + err.Error()}
	}
	s.lines = map[string]int{}
	s.indexJSON(&v, "")
	v.Standardize()
	return v.Pack(), nil
}

var (
	hujsonLine   = regexp.MustCompile(`line (\d+)`)
	hujsonOffset = regexp.MustCompile(`offset (\d+)`)
)

// syntaxLine digs the position out of a hujson error, which carries it only in
// its text.
func (s *source) syntaxLine(err error) int {
	if m := hujsonLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line
	}
	if m := hujsonOffset.FindStringSubmatch(err.Error()); m != nil {
		off, _ := strconv.Atoi(m[1])
		return s.lineAt(off)
	}
	return 0
}

func (s *source) indexJSON(v *hujson.Value, path string) {
	if path != "" {
		s.lines[path] = s.lineAt(v.StartOffset)
	}
	switch comp := v.Value.(type) {
	case *hujson.Object:
		for i := range comp.Members {
			m := &comp.Members[i]
			name, ok := m.Name.Value.(hujson.Literal)
			if !ok {
				continue
			}
			key := name.String()
			child := key
			if path != "" {
				child = path + "." + key
			}
			s.lines[child] = s.lineAt(m.Name.StartOffset)
			s.indexValue(&m.Value, child)
		}
	case *hujson.Array:
		for i := range comp.Elements {
			s.indexJSON(&comp.Elements[i], fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// indexValue indexes the children of a member's value without overwriting
// the member's own line (the line of its name).
func (s *source) indexValue(v *hujson.Value, path string) {
	line := s.lines[path]
	s.indexJSON(v, path)
	s.lines[path] = line
}

func (s *source) fromTOML() ([]byte, error) {
	var doc map[string]any
	if _, err := toml.Decode(string(s.raw), &doc); err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, &Error{Path: s.path, Line: perr.Position.Line, Msg: "syntax: " + perr.Message}
		}
		return nil, &Error{Path: s.path, Msg: "syntax: " + err.Error()}
	}
	s.lines = tomlKeyLines(s.raw)
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, &Error{Path: s.path, Msg: err.Error()}
	}
	return out, nil
}

// tomlKeyLines maps key paths to lines well enough for error messages:
// [tables], [[arrays of tables]] and key = value lines.
func tomlKeyLines(raw []byte) map[string]int {
	lines := map[string]int{}
	counts := map[string]int{}
	prefix := ""
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "[["):
			name := strings.TrimSpace(strings.Trim(line, "[] "))
			prefix = fmt.Sprintf("%s[%d]", name, counts[name])
			counts[name]++
			lines[prefix] = i + 1
		case strings.HasPrefix(line, "["):
			prefix = strings.TrimSpace(strings.Trim(line, "[] "))
			lines[prefix] = i + 1
		default:
			key, _, ok := strings.Cut(line, "=")
			key = strings.Trim(strings.TrimSpace(key), `"`)
			if !ok || key == "" || strings.HasPrefix(key, "#") {
				continue
			}
			if prefix != "" {
				key = prefix + "." + key
			}
			lines[key] = i + 1
		}
	}
	return lines
}

// decodeError turns a json decoding error into an Error at the right line.
func (s *source) decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		e := &Error{Path: s.path, Key: typeErr.Field, Msg: fmt.Sprintf("want %s, not %s", jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value)}
		if strings.EqualFold(filepath.Ext(s.path), ".toml") {
			e.Line = s.lineOf(typeErr.Field)
		} else {
			e.Line = s.lineAt(int(typeErr.Offset))
		}
		return e
	}
	return &Error{Path: s.path, Msg: err.Error()}
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int64", "float64":
		return "a number"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	case "ptr":
		return "a value"
	}
	return "a " + kind
}

// known lists the keys berth reads, per section; unknownKeys reports others.
var known = map[string][]string{
	"": {"name", "main", "compatibility_date", "compatibility_flags", "vars", "durable_objects", "migrations",
		"exports", "containers", "limits", "dev", "$schema", "account_id", "workers_dev", "observability",
		"assets", "routes", "route", "placement", "upload_source_maps", "keep_vars", "env"},
	"containers": {"class_name", "name", "image", "image_build_context", "image_vars", "instance_type",
		"max_instances", "scheduling_policy", "images", "observability", "ssh", "authorized_keys",
		"trusted_user_ca_keys", "constraints", "rollout_step_percentage", "rollout_kind",
		"rollout_active_grace_period", "instances", "configuration", "affinities", "unsafe"},
}

func unknownKeys(doc map[string]any) []string {
	var warnings []string
	for key := range doc {
		if !slices.Contains(known[""], key) {
			warnings = append(warnings, fmt.Sprintf("unexpected top-level field %q: berth ignores it", key))
		}
	}
	if list, ok := doc["containers"].([]any); ok {
		for i, entry := range list {
			fields, _ := entry.(map[string]any)
			for key := range fields {
				if !slices.Contains(known["containers"], key) {
					warnings = append(warnings, fmt.Sprintf("unexpected field %q in containers[%d]: berth ignores it", key, i))
				}
			}
		}
	}
	slices.Sort(warnings)
	return warnings
}
