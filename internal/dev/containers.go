package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/docker"
	"github.com/berth-dev/berth/internal/storage"
)

// openContainers builds (or finds) the image of every containers[] entry,
// starts the app's container Manager and takes over the containers a
// previous berth dev left running for objects that still exist. It does
// nothing when the config has no containers or dev.enable_containers is
// false.
// containerBootWait is ManagerConfig.BootWait for berth dev: long enough
// for a typical app (a Go binary binds in milliseconds, Node in about a
// second) and short enough that a port the app never opens is reported
// soon.
const containerBootWait = 2 * time.Second

func (s *Server) openContainers(ctx context.Context) error {
	if len(s.cfg.Containers) == 0 || s.containersDisabled() {
		return nil
	}
	if s.host == nil {
		return &config.Error{Path: s.cfg.Path, Key: "containers", Msg: "containers need Durable Object classes: add a durable_objects binding and a migration"}
	}
	rt := s.opts.ContainerRuntime
	if rt == nil {
		host, err := docker.ResolveHost(s.cfg.Dev.ContainerEngine.Socket, os.Getenv)
		if err != nil {
			return fmt.Errorf("containers: %w", err)
		}
		d, err := docker.New(docker.Options{Host: host, Logger: s.log, EgressCADir: s.egressCADir()})
		if err != nil {
			return fmt.Errorf("containers: connect to docker: %w", err)
		}
		s.closeRuntime = d.Close
		rt = d
	}
	classes := map[string]container.ClassConfig{}
	for i, ct := range s.cfg.Containers {
		cls := s.containerClass(ct)
		key := fmt.Sprintf("containers[%d]", i)
		fail := func(k, format string, args ...any) error {
			return &config.Error{Path: s.cfg.Path, Key: key + k, Msg: fmt.Sprintf("class %s: ", cls) + fmt.Sprintf(format, args...)}
		}
		if ct.Image == "" {
			return fail(".image", "required: a Dockerfile path or an image reference")
		}
		it, err := ct.InstanceType.Resolve()
		if err != nil {
			return fail(".instance_type", "%v", err)
		}
		fmt.Fprintf(s.opts.Out, "Preparing the container image of %s (%s)…\n", cls, ct.Image)
		repo := "berth-dev/" + imageRepoName(s.appName()+"-"+cls)
		img, err := container.PrepareImage(ctx, rt, container.ImageSource{
			Image:    ct.Image,
			BaseDir:  s.cfg.Dir,
			Context:  ct.ImageBuildContext,
			Args:     ct.ImageVars,
			Repo:     repo,
			Labels:   s.opts.ContainerLabels,
			Progress: &prefixWriter{w: s.opts.Out, prefix: "  │ "},
		})
		if errors.Is(err, container.ErrUnavailable) {
			// Not the image's fault: say where the engine was looked for.
			return fmt.Errorf("containers: the Docker engine is not reachable (dev.container_engine, $WRANGLER_DOCKER_HOST or $DOCKER_HOST choose it; --enable-containers=false runs without containers): %w", err)
		}
		if err != nil {
			return fail(".image", "%v", err)
		}
		ref := imageRef(img, repo, ct.Image)
		fmt.Fprintf(s.opts.Out, "Container image of %s: %s\n", cls, ref)
		cc := container.ClassConfig{Image: ref, Limits: it.Limits()}
		switch {
		case ct.MaxInstances != nil && *ct.MaxInstances == 0:
			cc.NoInstances = true
		default:
			cc.MaxInstances = ct.MaxInstancesOrDefault()
		}
		if len(img.ExposedPorts) > 0 {
			cc.DefaultPort = img.ExposedPorts[0]
		}
		classes[cls] = cc
	}
	mgr, err := container.NewManager(container.ManagerConfig{
		App:     s.appName(),
		Runtime: rt,
		Logger:  s.log,
		Classes: classes,
		Labels:  s.opts.ContainerLabels,
		// Cold starts: the first probe of a new container's port waits for
		// the app to bind it instead of failing into a 300 ms poll.
		BootWait: containerBootWait,
	})
	if err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	s.containers = mgr
	for cls := range classes {
		s.containerClasses = append(s.containerClasses, cls)
	}
	// A container whose object still exists (has storage) is taken over;
	// the rest are removed. Containers are labelled with the class's name,
	// storage is kept under its identity (its first name, through
	// renamed_classes).
	attached, err := mgr.Recover(ctx, func(o container.Owner) bool {
		ok, err := s.store.Exists(storage.ObjectKey{Namespace: s.cfg.ClassIdentity(o.Class), ID: o.Object})
		return err == nil && ok
	})
	if err != nil {
		s.log.Warn("containers: recover containers of a previous run", "err", err)
	}
	if len(attached) > 0 {
		fmt.Fprintf(s.opts.Out, "Took over %d running container(s) of a previous run\n", len(attached))
	}
	return nil
}

// closeContainers removes the containers this run started or took over,
// as wrangler dev does on exit.
func (s *Server) closeContainers() {
	if s.containers != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.containers.Shutdown(ctx); err != nil {
			s.log.Warn("remove containers", "err", err)
		}
		s.containers = nil
	}
	if s.closeRuntime != nil {
		if err := s.closeRuntime(); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("close container runtime", "err", err)
		}
		s.closeRuntime = nil
	}
}

// egressCADir holds the CA that signs the HTTPS containers send out when
// it is intercepted: one per state directory (.berth/egress-ca by default),
// so that containers keep trusting it across runs.
func (s *Server) egressCADir() string {
	if s.opts.StateDir != "" {
		return filepath.Join(s.opts.StateDir, "egress-ca")
	}
	return filepath.Join(s.cfg.Dir, ".berth", "egress-ca")
}

func (s *Server) containersDisabled() bool {
	if s.opts.DisableContainers {
		return true
	}
	e := s.cfg.Dev.EnableContainers
	return e != nil && !*e
}

// containerClass is the Durable Object class a containers[] entry belongs
// to: class_name, or the exports entry that names the container.
func (s *Server) containerClass(ct config.Container) string {
	if ct.ClassName != "" {
		return ct.ClassName
	}
	for name, e := range s.cfg.Exports {
		if ct.Name != "" && e.Container == ct.Name {
			return name
		}
	}
	return ""
}

func (s *Server) appName() string {
	if s.cfg.Name != "" {
		return s.cfg.Name
	}
	return filepath.Base(s.cfg.Dir)
}

var nonRepoChars = regexp.MustCompile(`[^a-z0-9._-]+`)

// imageRepoName makes a class name usable in an image repository name.
func imageRepoName(cls string) string {
	n := nonRepoChars.ReplaceAllString(strings.ToLower(cls), "-")
	n = strings.Trim(n, "-._")
	if n == "" {
		return "container"
	}
	return n
}

// prefixWriter writes each line of build output indented under its
// heading, so that a user sees the build as it runs.
type prefixWriter struct {
	w      io.Writer
	prefix string
	mid    bool // inside a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if !p.mid {
			out = append(out, p.prefix...)
			p.mid = true
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// imageRef names img for the class's containers: its tag in repo (what
// berth built), else the reference the config gave, else its ID. Not just
// any of its tags: the same image may carry another app's tag, which that
// app may remove while this one runs.
func imageRef(img container.Image, repo, configured string) string {
	for _, r := range img.Refs {
		if strings.HasPrefix(r, repo+":") {
			return r
		}
	}
	for _, r := range []string{configured, configured + ":latest"} {
		if slices.Contains(img.Refs, r) {
			return r
		}
	}
	return img.ID
}
