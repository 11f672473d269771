package actor

import (
	"fmt"
	"slices"
	"strings"

	"github.com/berth-dev/berth/internal/config"
)

// Validate checks the Durable Object part of cfg against the classes the
// bundled script exports (exported: the names of its exported classes),
// which config.Load cannot know. It fails, with a *config.Error whose
// message names both the binding (or container, or migration) and the
// class, when:
//
//   - a durable_objects binding names a class the script does not export,
//     or a class of another script (script_name; berth runs one script);
//   - a bound class has no migration creating it and no exports entry;
//   - a containers entry belongs to a class the script does not export or
//     that has no migration;
//   - a migration (or exports entry) creates a class the script does not
//     export, as Cloudflare refuses at deploy.
//
// It returns the first problem in file order.
func Validate(cfg *config.Config, exported []string) error {
	migrated := cfg.MigratedClasses()
	fail := func(key, format string, args ...any) error {
		return &config.Error{Path: cfg.Path, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	// missingMigration says how to make the class exist.
	missingMigration := func(class string) string {
		if e, ok := cfg.Exports[class]; ok && e.State == "deleted" {
			return fmt.Sprintf("class %q is marked deleted in exports", class)
		}
		if len(cfg.Exports) > 0 {
			return fmt.Sprintf("class %q has no exports entry: add \"exports\": {%q: {\"type\": \"durable-object\", \"storage\": \"sqlite\"}}", class, class)
		}
		return fmt.Sprintf("class %q has no migration: add {\"tag\": \"v1\", \"new_sqlite_classes\": [%q]} to migrations", class, class)
	}
	notExported := func(class string) string {
		msg := fmt.Sprintf("class %q is not exported by the script", class)
		if cfg.Main != "" {
			msg += " " + cfg.Main
		}
		if len(exported) > 0 {
			msg += fmt.Sprintf(" (it exports %s)", strings.Join(exported, ", "))
		}
		return msg + fmt.Sprintf("; add `export class %s extends DurableObject`", class)
	}

	for i, b := range cfg.DurableObjects.Bindings {
		key := fmt.Sprintf("durable_objects.bindings[%d]", i)
		switch {
		case b.ScriptName != "" && b.ScriptName != cfg.Name:
			return fail(key+".script_name", "binding %q: class %q of script %q: bindings to other scripts are not supported", b.Name, b.ClassName, b.ScriptName)
		case !slices.Contains(exported, b.ClassName):
			return fail(key+".class_name", "binding %q: %s", b.Name, notExported(b.ClassName))
		case !slices.Contains(migrated, b.ClassName):
			return fail(key+".class_name", "binding %q: %s", b.Name, missingMigration(b.ClassName))
		}
	}
	for i, ct := range cfg.Containers {
		key := fmt.Sprintf("containers[%d].class_name", i)
		class := ct.ClassName
		if class == "" {
			class = exportUsingContainer(cfg, ct.Name)
		}
		switch {
		case class == "":
			continue // config.Load reports it
		case !slices.Contains(exported, class):
			return fail(key, "container %s: %s", containerLabel(ct, i), notExported(class))
		case !slices.Contains(migrated, class):
			return fail(key, "container %s: %s", containerLabel(ct, i), missingMigration(class))
		}
	}
	for _, class := range migrated {
		if slices.Contains(exported, class) {
			continue
		}
		if _, ok := cfg.Exports[class]; ok {
			return fail("exports."+class, "%s", notExported(class))
		}
		return fail("migrations", "migration %q: %s", creatingTag(cfg, class), notExported(class))
	}
	return nil
}

func containerLabel(ct config.Container, i int) string {
	if ct.Name != "" {
		return fmt.Sprintf("%q", ct.Name)
	}
	return fmt.Sprintf("#%d (image %q)", i, ct.Image)
}

func exportUsingContainer(cfg *config.Config, name string) string {
	if name == "" {
		return ""
	}
	for class, e := range cfg.Exports {
		if e.Container == name {
			return class
		}
	}
	return ""
}

// creatingTag is the tag of the last migration that brings class into
// existence (new, renamed to, or transferred to).
func creatingTag(cfg *config.Config, class string) string {
	tag := ""
	for _, m := range cfg.Migrations {
		if slices.Contains(m.NewClasses, class) || slices.Contains(m.NewSqliteClasses, class) {
			tag = m.Tag
		}
		for _, r := range m.RenamedClasses {
			if r.To == class {
				tag = m.Tag
			}
		}
		for _, t := range m.TransferredClasses {
			if t.To == class {
				tag = m.Tag
			}
		}
	}
	return tag
}
