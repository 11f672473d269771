// Package cli is berth's command line: flag parsing and output only. The work
// itself is done by the packages the commands call.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/jsengine"
)

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"

// Main runs the command line and returns the process exit code: 0 on success,
// 1 when a command failed, 2 for a usage error.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Profiles for developers measuring berth, written when the run ends.
	for _, prof := range []struct {
		env   string
		start func(path string) (end func(), err error)
	}{{"BERTH_CPUPROFILE", startCPUProfile}, {"BERTH_JSPROFILE", startJSProfile}} {
		if path := os.Getenv(prof.env); path != "" {
			end, err := prof.start(path)
			if err != nil {
				fmt.Fprintf(os.Stderr, "berth: %s: %v\n", prof.env, err)
				return 1
			}
			defer end()
		}
	}
	root := newRoot(os.Stdout, os.Stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "berth: %v\n", err)
	var usage usageError
	if errors.As(err, &usage) {
		return 2
	}
	return 1
}

// startCPUProfile writes a pprof CPU profile of the whole run to path, for
// developers measuring berth (BERTH_CPUPROFILE=file berth dev …).
func startCPUProfile(path string) (end func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// startJSProfile writes where the Workers' JavaScript spent its time to
// path when the run ends, as folded stacks (BERTH_JSPROFILE=file).
func startJSProfile(path string) (end func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	p := jsengine.StartProfile()
	return func() {
		p.Stop()
		if err := p.WriteFolded(f); err != nil {
			fmt.Fprintf(os.Stderr, "berth: BERTH_JSPROFILE: %v\n", err)
		}
		f.Close()
	}, nil
}

type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var verbose bool
	root := &cobra.Command{
		Use:           "berth",
		Short:         "Run Cloudflare-style container applications on your own machine",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug detail")
	logger := func() *slog.Logger {
		level := slog.LevelInfo
		if verbose {
			level = slog.LevelDebug
		}
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	}
	root.AddCommand(newDevCmd(stdout, logger), newContainerCmd(stdout, stderr, logger))
	return root
}
