package actor

import "github.com/containerd/errdefs"

// Sentinel errors. Operations wrap them with context
// (fmt.Errorf("id %q: %w", s, ErrInvalid)); callers test with errors.Is.
// The classes are containerd's errdefs, as in packages container and
// storage, so one mapping (to HTTP, or to JS exception types) serves all.
var (
	// ErrInvalid: bad input, such as a malformed id or an id of another
	// namespace. The JS binding turns it into a TypeError.
	ErrInvalid = errdefs.ErrInvalidArgument
	// ErrClosed: the host was closed.
	ErrClosed error = &classified{"actor host is closed", errdefs.ErrUnavailable}
)

type classified struct {
	msg   string
	class error
}

func (e *classified) Error() string { return e.msg }
func (e *classified) Unwrap() error { return e.class }
