package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ImageSource is the `image` of a container as a user configures it: a path to
// a Dockerfile (or to a directory holding one) that berth builds, or a
// reference to an existing image.
type ImageSource struct {
	// Image is the Dockerfile path or image reference; relative paths are
	// taken from BaseDir.
	Image   string
	BaseDir string
	// Context is the build context; empty means the Dockerfile's directory.
	Context string
	Args    map[string]string
	// Repo names the images berth builds, e.g. "berth-dev/myclass".
	Repo string
	// Labels go on built images.
	Labels   map[string]string
	Progress io.Writer
}

// PrepareImage returns the image src names, building it when src is a
// Dockerfile whose inputs changed since the last build (the tag is a digest of
// the inputs, see ContentTag) and resolving it otherwise.
func PrepareImage(ctx context.Context, images Images, src ImageSource) (Image, error) {
	dockerfile, ok, err := src.dockerfile()
	if err != nil {
		return Image{}, err
	}
	if !ok {
		return images.Resolve(ctx, src.Image)
	}
	spec := BuildSpec{
		ContextDir: src.Context,
		Dockerfile: dockerfile,
		Args:       src.Args,
		Labels:     src.Labels,
		Progress:   src.Progress,
	}
	if spec.ContextDir == "" {
		spec.ContextDir = filepath.Dir(dockerfile)
	} else if !filepath.IsAbs(spec.ContextDir) {
		spec.ContextDir = filepath.Join(src.BaseDir, spec.ContextDir)
	}
	if spec.Tag, err = ContentTag(src.Repo, spec); err != nil {
		return Image{}, err
	}
	if img, err := images.Resolve(ctx, spec.Tag); err == nil {
		if src.Progress != nil {
			fmt.Fprintf(src.Progress, "image %s is up to date\n", spec.Tag)
		}
		return img, nil
	}
	return images.Build(ctx, spec)
}

// dockerfile reports whether src.Image names a file on disk, and which:
// a directory means the Dockerfile inside it. Anything that does not exist is
// taken for an image reference, as wrangler does.
func (src ImageSource) dockerfile() (string, bool, error) {
	if src.Image == "" {
		return "", false, fmt.Errorf("image: %w: want a Dockerfile path or an image reference", ErrInvalid)
	}
	path := src.Image
	if !filepath.IsAbs(path) {
		path = filepath.Join(src.BaseDir, path)
	}
	info, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		if looksLikePath(src.Image) {
			return "", false, fmt.Errorf("image %q: %w: no such Dockerfile", src.Image, ErrInvalid)
		}
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("image %q: %w", src.Image, err)
	}
	if info.IsDir() {
		path = filepath.Join(path, "Dockerfile")
		if _, err := os.Stat(path); err != nil {
			return "", false, fmt.Errorf("image %q: %w: the directory has no Dockerfile", src.Image, ErrInvalid)
		}
	}
	return path, true, nil
}

// looksLikePath tells a path that does not exist from an image reference, so
// that a typo in a Dockerfile path is reported as such rather than as an
// image that cannot be pulled.
func looksLikePath(s string) bool {
	return strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") || strings.HasPrefix(s, "/") ||
		strings.HasSuffix(s, "Dockerfile") || strings.HasSuffix(s, ".dockerfile")
}
