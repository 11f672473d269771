package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/dev"
)

func newDevCmd(stdout io.Writer, logger func() *slog.Logger) *cobra.Command {
	var (
		configPath string
		ip         string
		port       int
		vars       []string
		persistTo  string
		containers bool
	)
	cmd := &cobra.Command{
		Use:   "dev [DIR]",
		Short: "Serve a project locally, rebuilding on changes (like wrangler dev)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{errors.New("dev: want at most one project directory")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			parsed, err := colonPairs("--var", vars)
			if err != nil {
				return usageError{err}
			}
			if !cmd.Flags().Changed("port") {
				port = -1
			} else if port < 0 || port > 65535 {
				return usageError{fmt.Errorf("--port %d: want 0 to 65535", port)}
			}
			useDevProcessors(os.Getenv)
			return dev.Run(cmd.Context(), dev.Options{
				Dir:        dir,
				ConfigPath: configPath,
				IP:         ip,
				Port:       port,
				Vars:       parsed,
				Environ:    os.Environ(),
				Logger:     logger(),
				Out:        stdout,
				Watch:      true,

				StateDir:          persistTo,
				DisableContainers: !containers,
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&configPath, "config", "c", "", "config file (default: wrangler.jsonc, wrangler.json or wrangler.toml in DIR)")
	fl.StringVar(&ip, "ip", "", "IP address to listen on (default 127.0.0.1)")
	fl.IntVar(&port, "port", 8787, "port to listen on")
	fl.StringArrayVar(&vars, "var", nil, "a var for the Worker's env, KEY:VALUE (repeatable); overrides the config")
	fl.StringVar(&persistTo, "persist-to", "", "directory for Durable Object state (default DIR/.berth/state)")
	fl.BoolVar(&containers, "enable-containers", true, "run the config's containers (--enable-containers=false skips them)")
	return cmd
}

// devProcessors is how many processors berth dev runs Go code on unless
// GOMAXPROCS says otherwise. One: a request crosses several goroutines (the
// HTTP server's, the JavaScript loop, the container connection's), and with
// a second processor each hand-over wakes a sleeping thread instead of
// running on the thread that is already awake. On 2 vCPUs one processor took
// the warm Worker → object → container path of TestBenchExample/standard-3
// from 1,534 to 2,296 req/s at 2 connections (p50 1.17 → 0.81 ms) and from
// 2,167 to 3,165 req/s at 8 (docs/benchmarks.md); the container and the
// client have the other processor to themselves.
const devProcessors = 1

// useDevProcessors applies devProcessors when GOMAXPROCS is not set.
func useDevProcessors(getenv func(string) string) {
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(devProcessors)
	}
}

// colonPairs parses wrangler's KEY:VALUE flag values.
func colonPairs(flag string, pairs []string) (map[string]string, error) {
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, ":")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY:VALUE", flag, p)
		}
		out[k] = v
	}
	return out, nil
}
