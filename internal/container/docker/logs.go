package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	dcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
)

// Logs implements container.Runtime. Containers run without a TTY, so the
// engine's stream is always multiplexed; each line carries the engine's
// timestamp.
func (r *Runtime) Logs(ctx context.Context, id string, opts container.LogOptions) iter.Seq2[container.LogLine, error] {
	return func(yield func(container.LogLine, error) bool) {
		op := fmt.Sprintf("logs of container %s", shortID(id))
		if opts.Tail < 0 {
			yield(container.LogLine{}, fmt.Errorf("%s: %w: negative tail %d", op, container.ErrInvalid, opts.Tail))
			return
		}
		outer := ctx
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		lo := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: opts.Follow}
		if !opts.Since.IsZero() {
			lo.Since = fmt.Sprintf("%d.%09d", opts.Since.Unix(), opts.Since.Nanosecond())
		}
		if opts.Tail > 0 {
			lo.Tail = strconv.Itoa(opts.Tail)
		}
		body, err := r.api.ContainerLogs(ctx, id, lo)
		if err != nil {
			if outer.Err() == nil {
				yield(container.LogLine{}, wrapErr(op, err))
			}
			return
		}
		defer body.Close()

		lines := make(chan container.LogLine, 64)
		copyErr := make(chan error, 1)
		go func() {
			defer close(lines)
			stdout := &lineWriter{ctx: ctx, stream: container.Stdout, out: lines}
			stderr := &lineWriter{ctx: ctx, stream: container.Stderr, out: lines}
			_, err := stdcopy.StdCopy(stdout, stderr, body)
			stdout.flush()
			stderr.flush()
			copyErr <- err
		}()
		for line := range lines {
			if !yield(line, nil) {
				cancel()
				body.Close()
				for range lines {
				}
				return
			}
		}
		if err := <-copyErr; err != nil && outer.Err() == nil {
			yield(container.LogLine{}, wrapErr(op, err))
		}
	}
}

// lineWriter splits one demultiplexed stream into timestamped lines.
type lineWriter struct {
	ctx    context.Context
	stream container.Stream
	out    chan<- container.LogLine
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if err := w.emit(string(w.buf[:i])); err != nil {
			return 0, err
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// flush emits a last line that had no newline.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

func (w *lineWriter) emit(raw string) error {
	line := container.LogLine{Stream: w.stream, Text: raw}
	if stamp, text, ok := strings.Cut(raw, " "); ok {
		if t, err := time.Parse(time.RFC3339Nano, stamp); err == nil {
			line.Time, line.Text = t, text
		}
	}
	line.Text = strings.TrimSuffix(line.Text, "\r")
	select {
	case w.out <- line:
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// Stats implements container.Runtime with a one-shot reading (no second
// sample, so no one-second wait). Memory is the cgroup's usage less its
// inactive page cache, as `docker stats` reports it: total_inactive_file on
// cgroup v1, inactive_file on v2. That is the memory the container would
// keep under pressure; the raw usage counts cache the kernel can drop.
func (r *Runtime) Stats(ctx context.Context, id string) (container.Stats, error) {
	op := fmt.Sprintf("stats of container %s", shortID(id))
	ins, err := r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return container.Stats{}, wrapErr(op, err)
	}
	if ins.Container.State == nil || !ins.Container.State.Running {
		return container.Stats{}, fmt.Errorf("%s: %w", op, container.ErrNotRunning)
	}
	res, err := r.api.ContainerStats(ctx, ins.Container.ID, client.ContainerStatsOptions{})
	if err != nil {
		return container.Stats{}, wrapErr(op, err)
	}
	defer res.Body.Close()
	var s dcontainer.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return container.Stats{}, fmt.Errorf("%s: decode: %w", op, err)
	}
	out := container.Stats{
		CPU:         time.Duration(s.CPUStats.CPUUsage.TotalUsage),
		MemoryBytes: int64(memoryWithoutCache(s.MemoryStats)),
		At:          r.now(),
	}
	if hc := ins.Container.HostConfig; hc != nil {
		out.MemoryLimitBytes = hc.Memory
	}
	return out, nil
}

func memoryWithoutCache(m dcontainer.MemoryStats) uint64 {
	if v, ok := m.Stats["total_inactive_file"]; ok && v < m.Usage { // cgroup v1
		return m.Usage - v
	}
	if v, ok := m.Stats["inactive_file"]; ok && v < m.Usage { // cgroup v2
		return m.Usage - v
	}
	return m.Usage
}
