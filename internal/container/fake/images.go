package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/container"
)

// image is a fake image: the configuration a Dockerfile produced and the
// paths COPY put into it (their contents are never read).
type image struct {
	id         string
	refs       []string
	env        []string // KEY=value, one per key, in the order first set
	labels     map[string]string
	exposed    []int
	workDir    string
	user       string
	entrypoint []string
	cmd        []string
	files      map[string]bool
	dirs       map[string]bool
	created    time.Time
}

func (img *image) clone() *image {
	c := *img
	c.refs = nil
	c.env = slices.Clone(img.env)
	c.labels = copyMap(img.labels)
	c.exposed = slices.Clone(img.exposed)
	c.entrypoint = slices.Clone(img.entrypoint)
	c.cmd = slices.Clone(img.cmd)
	c.files = maps.Clone(img.files)
	c.dirs = maps.Clone(img.dirs)
	return &c
}

func (img *image) public() container.Image {
	return container.Image{
		ID:           img.id,
		Refs:         slices.Clone(img.refs),
		ExposedPorts: slices.Clone(img.exposed),
		Labels:       copyMap(img.labels),
	}
}

func (img *image) setEnv(key, value string) {
	img.env = setEnv(img.env, key, value)
}

func setEnv(env []string, key, value string) []string {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			env[i] = key + "=" + value
			return env
		}
	}
	return append(env, key+"="+value)
}

func lookupEnv(env []string, key string) (string, bool) {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v, true
		}
	}
	return "", false
}

// normalizeRef gives a reference the form tags are stored under: the
// implicit "latest" tag made explicit and Docker Hub's default prefixes
// dropped.
func normalizeRef(ref string) string {
	ref = strings.TrimPrefix(ref, "docker.io/")
	ref = strings.TrimPrefix(ref, "library/")
	if strings.Contains(ref, "@") {
		return ref
	}
	if i := strings.LastIndex(ref, ":"); i < 0 || i < strings.LastIndex(ref, "/") {
		ref += ":latest"
	}
	return ref
}

// lookupImage finds an image by tag, full id or unique id prefix. The caller
// holds rt.mu.
func (rt *Runtime) lookupImage(ref string) *image {
	if id, ok := rt.tags[normalizeRef(ref)]; ok {
		return rt.images[id]
	}
	hexID := strings.TrimPrefix(ref, "sha256:")
	if len(hexID) < 4 {
		return nil
	}
	var found *image
	for id, img := range rt.images {
		if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), hexID) {
			if found != nil {
				return nil // ambiguous
			}
			found = img
		}
	}
	return found
}

// Resolve returns a local image. Nothing is pullable in the fake, so an
// image that is not local is ErrImageNotFound.
func (rt *Runtime) Resolve(ctx context.Context, ref string) (container.Image, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	img := rt.lookupImage(ref)
	if img == nil {
		return container.Image{}, fmt.Errorf("resolve image %q: %w", ref, container.ErrImageNotFound)
	}
	return img.public(), nil
}

// RemoveImage untags ref, removing the image when no tag is left, or
// removes the image ref names by id with all its tags.
func (rt *Runtime) RemoveImage(ctx context.Context, ref string) error {
	if ref == "" {
		return fmt.Errorf("remove image: %w: empty reference", container.ErrInvalid)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if id, ok := rt.tags[normalizeRef(ref)]; ok {
		delete(rt.tags, normalizeRef(ref))
		img := rt.images[id]
		img.refs = slices.DeleteFunc(img.refs, func(r string) bool { return r == normalizeRef(ref) })
		if len(img.refs) == 0 {
			delete(rt.images, id)
		}
		return nil
	}
	img := rt.lookupImage(ref)
	if img == nil {
		return nil
	}
	for _, r := range img.refs {
		delete(rt.tags, r)
	}
	delete(rt.images, img.id)
	return nil
}

// addImage stores a built image and points tag at it. The caller holds
// rt.mu.
func (rt *Runtime) addImage(img *image, tag string) {
	rt.seq++
	sum := sha256.Sum256(fmt.Appendf(nil, "%d %v %v %v %v", rt.seq, img.env, img.entrypoint, img.cmd, img.labels))
	img.id = "sha256:" + hex.EncodeToString(sum[:])
	rt.images[img.id] = img
	if tag == "" {
		return
	}
	tag = normalizeRef(tag)
	if oldID, ok := rt.tags[tag]; ok {
		old := rt.images[oldID]
		old.refs = slices.DeleteFunc(old.refs, func(r string) bool { return r == tag })
	}
	rt.tags[tag] = img.id
	img.refs = append(img.refs, tag)
}
