// Package loadgen drives an HTTP endpoint with a fixed number of keep-alive
// connections, each sending its next request as soon as the previous answer
// is read (closed loop), and reports throughput and latency percentiles.
// It exists to measure berth's Worker runtime through a real http.Server;
// only point it at loopback addresses.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Options describe one run.
type Options struct {
	URL         string
	Connections int           // default 2
	Duration    time.Duration // measured time; default 3 s
	Warmup      time.Duration // unmeasured time before it; default 300 ms
	// Check, when set, validates each response; a non-nil error counts the
	// request as failed.
	Check func(status int, body []byte) error
}

// Result is what a run measured.
type Result struct {
	Connections int
	Requests    int
	Errors      int
	FirstError  error
	Elapsed     time.Duration
	P50, P99    time.Duration
	Max         time.Duration
}

// RPS is successful requests per second.
func (r Result) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

func (r Result) String() string {
	return fmt.Sprintf("conns=%d req/s=%.0f p50=%s p99=%s max=%s requests=%d errors=%d",
		r.Connections, r.RPS(), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond), r.Requests, r.Errors)
}

// Run loads opts.URL until the warm-up and the measured duration are over.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.URL == "" {
		return Result{}, errors.New("loadgen: no URL")
	}
	if opts.Connections <= 0 {
		opts.Connections = 2
	}
	if opts.Duration <= 0 {
		opts.Duration = 3 * time.Second
	}
	if opts.Warmup <= 0 {
		opts.Warmup = 300 * time.Millisecond
	}
	type worker struct {
		lat    []time.Duration
		errs   int
		first  error
		client *http.Client
	}
	workers := make([]*worker, opts.Connections)
	for i := range workers {
		// One transport per worker pins each worker to its own connection.
		tr := &http.Transport{
			DialContext:         (&net.Dialer{}).DialContext,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			DisableCompression:  true,
		}
		workers[i] = &worker{lat: make([]time.Duration, 0, 1<<16), client: &http.Client{Transport: tr}}
	}
	start := time.Now()
	measureFrom := start.Add(opts.Warmup)
	stopAt := measureFrom.Add(opts.Duration)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.client.CloseIdleConnections()
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(stopAt) {
					return
				}
				err := once(ctx, w.client, opts)
				d := time.Since(t0)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					w.errs++
					if w.first == nil {
						w.first = err
					}
					continue
				}
				w.lat = append(w.lat, d)
			}
		}()
	}
	wg.Wait()
	res := Result{Connections: opts.Connections, Elapsed: opts.Duration}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		res.Errors += w.errs
		if res.FirstError == nil {
			res.FirstError = w.first
		}
	}
	res.Requests = len(all)
	if len(all) > 0 {
		slices.Sort(all)
		res.P50 = all[len(all)/2]
		res.P99 = all[len(all)*99/100]
		res.Max = all[len(all)-1]
	}
	return res, ctx.Err()
}

func once(ctx context.Context, c *http.Client, opts Options) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, opts.URL, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if opts.Check != nil {
		return opts.Check(resp.StatusCode, body)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
