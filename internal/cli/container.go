package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/docker"
)

func newContainerCmd(stdout, stderr io.Writer, logger func() *slog.Logger) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "container",
		Short: "Run and list berth's containers directly, without a Worker",
	}
	cmd.AddCommand(newContainerRunCmd(stdout, stderr, logger), newContainerListCmd(stdout, logger))
	return cmd
}

type containerRunFlags struct {
	listen       string
	port         int
	internet     bool
	instanceType string
	env          []string
	buildArgs    []string
	labels       []string
}

func newContainerRunCmd(stdout, stderr io.Writer, logger func() *slog.Logger) *cobra.Command {
	var f containerRunFlags
	cmd := &cobra.Command{
		Use:   "run [flags] DOCKERFILE|IMAGE",
		Short: "Start one container and serve its port over HTTP until interrupted",
		Long: "Builds the Dockerfile (or uses the image), starts one hardened container and proxies\n" +
			"HTTP from --listen to its --port. Ctrl-C removes the container.",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("container run: want exactly one DOCKERFILE or IMAGE")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runContainer(cmd.Context(), stdout, stderr, logger(), args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8787", "address to serve on")
	fl.IntVar(&f.port, "port", 8080, "container port to proxy to")
	fl.BoolVar(&f.internet, "internet", false, "let the container open outbound connections")
	fl.StringVar(&f.instanceType, "instance-type", container.DefaultInstanceType, "instance type: "+strings.Join(container.InstanceTypeNames(), ", "))
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "build argument KEY=VALUE (repeatable)")
	fl.StringArrayVar(&f.labels, "label", nil, "label KEY=VALUE for the container and the image built (repeatable)")
	return cmd
}

func runContainer(ctx context.Context, stdout, stderr io.Writer, log *slog.Logger, image string, f containerRunFlags) error {
	env, err := keyValues("--env", f.env)
	if err != nil {
		return usageError{err}
	}
	buildArgs, err := keyValues("--build-arg", f.buildArgs)
	if err != nil {
		return usageError{err}
	}
	labels, err := keyValues("--label", f.labels)
	if err != nil {
		return usageError{err}
	}
	itype, err := container.LookupInstanceType(f.instanceType)
	if err != nil {
		return usageError{fmt.Errorf("--instance-type: %w", err)}
	}
	if f.port < 1 || f.port > 65535 {
		return usageError{fmt.Errorf("--port %d: want 1 to 65535", f.port)}
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	defer ln.Close()

	rt, err := openEngine(log)
	if err != nil {
		return err
	}
	defer rt.Close()

	cwd, _ := os.Getwd()
	img, err := container.PrepareImage(ctx, rt, container.ImageSource{
		Image: image, BaseDir: cwd, Args: buildArgs,
		Repo:     "berth-dev/" + repoName(image),
		Labels:   labels,
		Progress: stderr,
	})
	if err != nil {
		return engineError(err)
	}
	labels[container.LabelApp] = "berth-container-run"
	inst, err := rt.Start(ctx, container.Spec{
		Image:    img.ID,
		Env:      env,
		Labels:   labels,
		Limits:   itype.Limits(),
		Internet: f.internet,
	})
	if err != nil {
		return err
	}
	// The container goes when berth goes, however the command ends.
	defer func() {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := rt.Destroy(cleanup, inst.ID); err != nil {
			log.Error("remove container", "id", short(inst.ID), "err", err)
		}
	}()
	go copyLogs(ctx, rt, inst.ID, stderr)

	exited := make(chan container.Exit, 1)
	go func() {
		if exit, err := rt.Wait(ctx, inst.ID); err == nil {
			exited <- exit
		}
	}()
	if err := waitForPort(ctx, rt, inst.ID, f.port, exited); err != nil {
		return err
	}

	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = fmt.Sprintf("container:%d", f.port)
			r.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return rt.Dial(ctx, inst.ID, f.port)
			},
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 30 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "Ready on http://%s (container %s, port %d)\n", ln.Addr(), short(inst.ID), f.port)

	var result error
	select {
	case <-ctx.Done():
	case exit := <-exited:
		result = fmt.Errorf("container %s exited with code %d", short(inst.ID), exit.Code)
	case err := <-serveErr:
		result = err
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	return result
}

// waitForPort dials until the container accepts on port, it exits, or ten
// seconds pass.
func waitForPort(ctx context.Context, rt container.Runtime, id string, port int, exited <-chan container.Exit) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	delay := 2 * time.Millisecond
	for {
		conn, err := rt.Dial(ctx, id, port)
		if err == nil {
			conn.Close()
			return nil
		}
		if !errors.Is(err, container.ErrPortNotListening) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container %s: port %d: the container is not listening: %w", short(id), port, ctx.Err())
		case exit := <-exited:
			return fmt.Errorf("container %s exited with code %d before listening on port %d", short(id), exit.Code, port)
		case <-time.After(delay):
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

func copyLogs(ctx context.Context, rt container.Runtime, id string, w io.Writer) {
	for line, err := range rt.Logs(ctx, id, container.LogOptions{Follow: true}) {
		if err != nil {
			return
		}
		fmt.Fprintf(w, "[container %s] %s\n", line.Stream, line.Text)
	}
}

func newContainerListCmd(stdout io.Writer, logger func() *slog.Logger) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the containers berth manages",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := openEngine(logger())
			if err != nil {
				return err
			}
			defer rt.Close()
			list, err := rt.List(cmd.Context(), nil)
			if err != nil {
				return engineError(err)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tAPP\tCLASS\tOBJECT\tIMAGE")
			for _, in := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", short(in.ID), state(in),
					in.Labels[container.LabelApp], in.Labels[container.LabelClass], in.Labels[container.LabelObject], in.Image)
			}
			return tw.Flush()
		},
	}
}

// openEngine connects to the Docker engine berth dev would use with no
// dev.container_engine in a config: $WRANGLER_DOCKER_HOST, $DOCKER_HOST,
// the docker CLI's current context, the default socket.
func openEngine(log *slog.Logger) (*docker.Runtime, error) {
	host, err := docker.ResolveHost("", os.Getenv)
	if err != nil {
		return nil, err
	}
	return docker.New(docker.Options{Host: host, Logger: log})
}

// engineError says where the engine was looked for when it is not there.
func engineError(err error) error {
	if errors.Is(err, container.ErrUnavailable) {
		return fmt.Errorf("the Docker engine is not reachable ($WRANGLER_DOCKER_HOST, $DOCKER_HOST or the docker CLI's context choose it): %w", err)
	}
	return err
}

func state(in container.Instance) string {
	switch {
	case in.Paused:
		return "paused"
	case in.Running:
		return "running"
	case in.Exit != nil:
		return fmt.Sprintf("exited (%d)", in.Exit.Code)
	}
	return "created"
}

func keyValues(flag string, pairs []string) (map[string]string, error) {
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, p)
		}
		out[k] = v
	}
	return out, nil
}

// repoName derives an image repository name from a Dockerfile path: the name
// of the directory it is in.
func repoName(image string) string {
	dir := filepath.Base(filepath.Dir(filepath.Clean(image)))
	if info, err := os.Stat(image); err == nil && info.IsDir() {
		dir = filepath.Base(filepath.Clean(image))
	}
	if dir == "." || dir == "/" {
		if cwd, err := os.Getwd(); err == nil {
			dir = filepath.Base(cwd)
		}
	}
	var b strings.Builder
	for _, r := range strings.ToLower(dir) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteRune('-')
		}
	}
	if name := strings.Trim(b.String(), "-_."); name != "" {
		return name
	}
	return "app"
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
