package config

import (
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"time"
)

// jsIdentifier is what a binding name must be: env.NAME in the Worker.
var jsIdentifier = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)

// validate checks what Cloudflare checks at deploy, one error at a time, in
// file order where it can.
func (c *Config) validate(s *source) error {
	if c.CompatibilityDate != "" {
		if _, err := time.Parse("2006-01-02", c.CompatibilityDate); err != nil {
			return s.errorf("compatibility_date", "%q: want a date YYYY-MM-DD", c.CompatibilityDate)
		}
	}
	if c.Limits.CPUMs < 0 {
		return s.errorf("limits.cpu_ms", "%d: want a positive number of milliseconds", c.Limits.CPUMs)
	}
	if c.Dev.Port < 0 || c.Dev.Port > 65535 {
		return s.errorf("dev.port", "%d: want 0 to 65535", c.Dev.Port)
	}
	if c.Dev.IP != "" && net.ParseIP(c.Dev.IP) == nil && c.Dev.IP != "localhost" {
		return s.errorf("dev.ip", "%q: want an IP address", c.Dev.IP)
	}
	if v := c.Dev.ContainerEngine.invalid; v != "" {
		return s.errorf("dev.container_engine", `%s: want a socket such as "unix:///var/run/docker.sock" or {"localDocker": {"socketPath": …}}`, v)
	}
	if sock := c.Dev.ContainerEngine.Socket; sock != "" {
		host, err := EngineHost(sock)
		if err != nil {
			return s.errorf("dev.container_engine", "%v", err)
		}
		c.Dev.ContainerEngine.Socket = host
	}
	for name := range c.Vars {
		if !jsIdentifier.MatchString(name) {
			return s.errorf("vars."+name, "%q is not a valid binding name", name)
		}
	}
	seenBinding := map[string]bool{}
	for i, b := range c.DurableObjects.Bindings {
		key := fmt.Sprintf("durable_objects.bindings[%d]", i)
		switch {
		case b.Name == "":
			return s.errorf(key+".name", "required")
		case !jsIdentifier.MatchString(b.Name):
			return s.errorf(key+".name", "%q is not a valid binding name", b.Name)
		case seenBinding[b.Name]:
			return s.errorf(key+".name", "%q is bound twice", b.Name)
		case b.ClassName == "":
			return s.errorf(key+".class_name", "required")
		}
		seenBinding[b.Name] = true
	}
	if len(c.Migrations) > 0 && len(c.Exports) > 0 {
		return s.errorf("exports", "use either migrations or exports, not both")
	}
	seenTag := map[string]bool{}
	for i, m := range c.Migrations {
		key := fmt.Sprintf("migrations[%d].tag", i)
		if m.Tag == "" {
			return s.errorf(key, "required")
		}
		if seenTag[m.Tag] {
			return s.errorf(key, "%q is used twice", m.Tag)
		}
		seenTag[m.Tag] = true
	}
	for name, e := range c.Exports {
		if e.Type != "" && e.Type != "durable-object" {
			return s.errorf("exports."+name+".type", "%q: want \"durable-object\"", e.Type)
		}
	}
	seenClass := map[string]bool{}
	for i, ct := range c.Containers {
		key := fmt.Sprintf("containers[%d]", i)
		class := ct.ClassName
		if class == "" {
			class = c.exportUsingContainer(ct.Name)
		}
		switch {
		case class == "":
			return s.errorf(key+".class_name", "required: the Durable Object class that owns the container")
		case seenClass[class]:
			return s.errorf(key+".class_name", "%q has a container already", class)
		case !c.isObjectClass(class):
			return s.errorf(key+".class_name", "%q is not a Durable Object class: no durable_objects binding, migration or exports entry names it", class)
		case ct.Image == "":
			return s.errorf(key+".image", "required: a Dockerfile path or an image reference")
		case ct.MaxInstances != nil && *ct.MaxInstances < 0:
			return s.errorf(key+".max_instances", "%d: want 0 or more", *ct.MaxInstances)
		}
		seenClass[class] = true
		if _, err := ct.InstanceType.Resolve(); err != nil {
			return s.errorf(key+".instance_type", "%v", err)
		}
	}
	return nil
}

func (c *Config) exportUsingContainer(name string) string {
	if name == "" {
		return ""
	}
	for class, e := range c.Exports {
		if e.Container == name {
			return class
		}
	}
	return ""
}

func (c *Config) isObjectClass(class string) bool {
	if _, ok := c.Exports[class]; ok {
		return true
	}
	for _, b := range c.DurableObjects.Bindings {
		if b.ClassName == class {
			return true
		}
	}
	return slices.Contains(c.MigratedClasses(), class)
}

// MigratedClasses returns the Durable Object classes the migrations (or the
// exports map) leave in existence, in order of creation.
func (c *Config) MigratedClasses() []string {
	var classes []string
	for _, m := range c.Migrations {
		classes = append(classes, m.NewClasses...)
		classes = append(classes, m.NewSqliteClasses...)
		for _, r := range m.RenamedClasses {
			if i := slices.Index(classes, r.From); i >= 0 {
				classes[i] = r.To
			}
		}
		for _, t := range m.TransferredClasses {
			classes = append(classes, t.To)
		}
		classes = slices.DeleteFunc(classes, func(cl string) bool { return slices.Contains(m.DeletedClasses, cl) })
	}
	for _, class := range slices.Sorted(maps.Keys(c.Exports)) {
		if c.Exports[class].State != "deleted" {
			classes = append(classes, class)
		}
	}
	return classes
}

// ClassIdentity is the name class was first created with, following
// renamed_classes back through the migrations in order. Durable Object ids
// and storage are keyed by it, so that a renamed class keeps its objects,
// as on Cloudflare. A class no migration renamed is its own identity.
func (c *Config) ClassIdentity(class string) string {
	live, _ := c.classLineage()
	if id, ok := live[class]; ok {
		return id
	}
	return class
}

// DeletedClassIdentities are the identities (see ClassIdentity) of the
// classes deleted_classes (or an exports entry in state "deleted") removed,
// in order of deletion: their storage is to be removed. An identity a
// class alive now still uses (a deleted class created again under its old
// name) is left out, so the live class's storage stays.
func (c *Config) DeletedClassIdentities() []string {
	live, deleted := c.classLineage()
	inUse := map[string]bool{}
	for _, id := range live {
		inUse[id] = true
	}
	var out []string
	for _, id := range deleted {
		if !inUse[id] && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// classLineage replays the migrations: live maps each class existing at the
// end to its identity, deleted lists the identities of deleted classes.
// A class created under a name some earlier class had as its identity (a
// deleted class made again, or a name freed by a rename) is a new class on
// Cloudflare, with no objects: its identity gets a suffix ".2", ".3"... that
// no class name can have, since class names are JS identifiers.
func (c *Config) classLineage() (live map[string]string, deleted []string) {
	live = map[string]string{}
	used := map[string]bool{}
	create := func(class string) {
		id := class
		for n := 2; used[id]; n++ {
			id = fmt.Sprintf("%s.%d", class, n)
		}
		used[id] = true
		live[class] = id
	}
	for _, m := range c.Migrations {
		for _, cl := range slices.Concat(m.NewClasses, m.NewSqliteClasses) {
			create(cl)
		}
		for _, r := range m.RenamedClasses {
			if id, ok := live[r.From]; ok {
				delete(live, r.From)
				live[r.To] = id
			}
		}
		for _, t := range m.TransferredClasses {
			create(t.To)
		}
		for _, cl := range m.DeletedClasses {
			id, ok := live[cl]
			if !ok {
				id = cl // created by migrations no longer listed
				used[id] = true
			}
			delete(live, cl)
			deleted = append(deleted, id)
		}
	}
	for _, class := range slices.Sorted(maps.Keys(c.Exports)) {
		if c.Exports[class].State == "deleted" {
			deleted = append(deleted, class)
		} else {
			live[class] = class
		}
	}
	return live, deleted
}
