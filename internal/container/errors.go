package container

import "github.com/containerd/errdefs"

// Sentinel errors. Implementations wrap them with context
// (fmt.Errorf("start container %q: %w", name, ErrNotFound)); callers test with
// errors.Is. The generic classes are containerd's errdefs, which the Docker
// client's own errors also belong to. Each specific sentinel unwraps to its
// class, so errors.Is(ErrExecutableNotFound, ErrNotFound) holds.
var (
	ErrNotFound      = errdefs.ErrNotFound
	ErrAlreadyExists = errdefs.ErrAlreadyExists
	ErrInvalid       = errdefs.ErrInvalidArgument
	ErrUnavailable   = errdefs.ErrUnavailable

	// ErrNotRunning: the operation needs a running container.
	ErrNotRunning error = &classified{"container is not running", errdefs.ErrFailedPrecondition}
	// ErrPortNotListening: nothing in the container accepts on the port.
	ErrPortNotListening error = &classified{"the container is not listening on the port", errdefs.ErrUnavailable}
	// ErrExecutableNotFound: exec named a program the container lacks.
	ErrExecutableNotFound error = &classified{"executable file not found in the container", errdefs.ErrNotFound}
	// ErrImageNotFound: an image is neither local nor pullable.
	ErrImageNotFound error = &classified{"image is neither local nor pullable", errdefs.ErrNotFound}
	// ErrBuildFailed: a Dockerfile step failed.
	ErrBuildFailed error = &classified{"image build failed", errdefs.ErrUnknown}
)

// classified is a specific sentinel that also belongs to a generic class.
type classified struct {
	msg   string
	class error
}

func (e *classified) Error() string { return e.msg }
func (e *classified) Unwrap() error { return e.class }
