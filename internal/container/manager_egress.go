package container

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
)

// ErrNoInterception: the runtime cannot intercept outbound traffic.
var ErrNoInterception error = &classified{"outbound interception is not supported by the container runtime", errdefs.ErrNotImplemented}

// InterceptOutbound adds rule to owner's outbound interception
// (ctx.container.interceptOutboundHttp and interceptOutboundHttps),
// replacing its rule for the same address. The rules last as long as the
// Manager, across the owner's containers: each later one starts with them,
// intercepted from its first instruction (Spec.Egress), and one that runs
// has the new rule in force when InterceptOutbound returns. A Start in
// flight is waited for. A runtime that is not an Interceptor gives
// ErrNoInterception.
func (m *Manager) InterceptOutbound(ctx context.Context, owner Owner, rule EgressRule) error {
	ic, ok := m.rt.(Interceptor)
	if !ok {
		return fmt.Errorf("intercept outbound traffic of %s: %w", owner, ErrNoInterception)
	}
	if rule.Handler == nil {
		return fmt.Errorf("intercept outbound traffic of %s: %w: rule %s has no handler", owner, ErrInvalid, rule)
	}
	s, err := m.slotFor(owner)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if s.egress == nil {
		s.egress = new(Egress)
	}
	e := s.egress
	m.mu.Unlock()
	e.Add(rule)

	// In the owner's turn, so that a Start in flight (which may have
	// started without interception) has settled.
	release, err := m.turn(ctx, s)
	if err != nil {
		return err
	}
	defer release()
	m.mu.Lock()
	r := s.run
	live := r != nil && !r.ended() && !r.removed
	m.mu.Unlock()
	if !live {
		return nil
	}
	if err := ic.Intercept(ctx, r.id, e); err != nil {
		return fmt.Errorf("intercept outbound traffic of the container of %s: %w", owner, err)
	}
	return nil
}

// egressOf is the table a new container of s starts with: nil when there
// are no rules (a container without interception starts faster), or the
// runtime cannot intercept.
func (m *Manager) egressOf(s *slot) *Egress {
	if _, ok := m.rt.(Interceptor); !ok {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.egress.Len() == 0 {
		return nil
	}
	return s.egress
}
