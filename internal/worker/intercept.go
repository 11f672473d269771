package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/berth-dev/berth/internal/container"
)

// Outbound interception of containers: the Go side of ctx.container's
// interceptOutboundHttp, interceptAllOutboundHttp and
// interceptOutboundHttps (js/intercept.js). Each call becomes a rule in the
// owner's table in the container Manager, whose handler hands the requests
// the container sends to the rule's fetcher:
//
//   - a loopback entrypoint, ctx.exports.Name({props}): the Worker's export
//     Name runs with this.ctx.props (the fetcher @cloudflare/containers
//     passes, ctx.exports.ContainerProxy);
//   - a Durable Object stub: the object's fetch handler.
//
// The fetcher is kept by address, not as a JavaScript value, so it works
// outside any request and after the activation that registered it has
// gone; the rules last as long as the Manager keeps the owner.

// entrypointPropsKey carries a loopback entrypoint's props (as JSON) in the
// context of the request dispatched to it.
type entrypointPropsKey struct{}

// requestProps is the ctx.props (JSON) of an entrypoint request, "" for
// none.
func requestProps(r *http.Request) string {
	if r == nil {
		return ""
	}
	props, _ := r.Context().Value(entrypointPropsKey{}).(string)
	return props
}

// loopbackPrefix starts the address of a loopback entrypoint fetcher:
// "@ep\n" + export name + "\n" + props as JSON.
const loopbackPrefix = "@ep\n"

// egressFetcher hands intercepted requests to a fetcher of the Worker.
type egressFetcher struct {
	w          *Worker
	entrypoint string // a loopback entrypoint's export
	props      string // and its props
	object     string // or a Durable Object's target
}

// egressHandler returns the handler that calls the fetcher at target.
func (w *Worker) egressHandler(target string) (http.Handler, error) {
	if rest, ok := strings.CutPrefix(target, loopbackPrefix); ok {
		name, props, _ := strings.Cut(rest, "\n")
		if !slices.Contains(w.entrypoints, name) {
			return nil, fmt.Errorf("%w: %q is not a WorkerEntrypoint export", ErrNoEntrypoint, name)
		}
		return &egressFetcher{w: w, entrypoint: name, props: props}, nil
	}
	if _, err := w.targetID(target); err != nil {
		return nil, err
	}
	return &egressFetcher{w: w, object: target}, nil
}

func (f *egressFetcher) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var err error
	if f.object != "" {
		err = f.w.serveObject(rw, r, f.object)
	} else {
		ctx := context.WithValue(r.Context(), entrypointPropsKey{}, f.props)
		err = f.w.serve(rw, r.WithContext(ctx), f.entrypoint, nil)
	}
	if err == nil {
		return
	}
	var hw *headWritten
	if errors.As(err, &hw) {
		return // the body was cut short; the connection tells the container
	}
	status := http.StatusInternalServerError
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrLimitExceeded) || errors.Is(err, ErrObjectReset) {
		status = http.StatusServiceUnavailable
	}
	f.w.cfg.Logger.Warn("the fetcher of an intercepted container request failed", "url", r.URL.String(), "err", err.Error())
	http.Error(rw, http.StatusText(status), status)
}

// interceptOutbound handles ctIntercept (after the object's id): the
// operation id, the kind ("http", "https" or "all"), the address and the
// fetcher's address. Calls are handed to the Manager in order, and a
// start() waits for those made before it (egressSettled).
func (rt *runtime) interceptOutbound(o *object, a []any) {
	opID, kind, addr, target := argInt(a, 0), argString(a, 1), argString(a, 2), argString(a, 3)
	c := o.ct
	var rules []container.EgressRule
	h, err := rt.cfg.owner.egressHandler(target)
	if err == nil {
		switch kind {
		case "all":
			// As workerd: every IPv4 and IPv6 address, port 80.
			for _, cidr := range []string{"0.0.0.0/0", "::/0"} {
				var r container.EgressRule
				if r, err = container.ParseEgressRule(cidr, false, h); err != nil {
					break
				}
				rules = append(rules, r)
			}
		case "http", "https":
			var r container.EgressRule
			if r, err = container.ParseEgressRule(addr, kind == "https", h); err == nil {
				rules = append(rules, r)
			}
		default:
			err = fmt.Errorf("unknown interception kind %q", kind)
		}
	}
	done := make(chan struct{})
	c.mu.Lock()
	prev := c.egress
	c.egress = done
	c.mu.Unlock()
	rt.async(opID, func() ([]any, error) {
		defer close(done)
		if prev != nil {
			select {
			case <-prev:
			case <-c.ctx.Done():
				return nil, c.ctx.Err()
			}
		}
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			if err := c.mgr.InterceptOutbound(c.ctx, c.owner, r); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
}

// egressSettled returns a channel closed once the intercept calls made so
// far are done.
func (c *objContainer) egressSettled() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.egress == nil {
		return closedChan()
	}
	return c.egress
}
