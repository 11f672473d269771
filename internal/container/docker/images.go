package docker

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/berth-dev/berth/internal/container"
)

// buildTailLines is how many lines of the failing step's output a build
// error quotes.
const buildTailLines = 40

// Build implements container.Images with the engine's classic builder, whose
// progress is plain text (BuildKit's would need its protobuf types).
func (r *Runtime) Build(ctx context.Context, spec container.BuildSpec) (container.Image, error) {
	op := fmt.Sprintf("build image %q", spec.Tag)
	if spec.ContextDir == "" {
		return container.Image{}, fmt.Errorf("%s: %w: no build context directory given", op, container.ErrInvalid)
	}
	ctxDir, err := filepath.Abs(spec.ContextDir)
	if err != nil {
		return container.Image{}, fmt.Errorf("%s: %w: context %q: %v", op, container.ErrInvalid, spec.ContextDir, err)
	}
	if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
		return container.Image{}, fmt.Errorf("%s: %w: build context %q is not a directory", op, container.ErrInvalid, spec.ContextDir)
	}
	dockerfile := spec.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(ctxDir, dockerfile)
	}
	if st, err := os.Stat(dockerfile); err != nil || st.IsDir() {
		return container.Image{}, fmt.Errorf("%s: %w: Dockerfile %q does not exist", op, container.ErrInvalid, dockerfile)
	}
	// The Dockerfile travels in the context; one outside the context dir is
	// added under a name of its own.
	dfName, err := filepath.Rel(ctxDir, dockerfile)
	external := err != nil || strings.HasPrefix(dfName, "..")
	if external {
		dfName = ".berth.Dockerfile"
	}
	dfName = filepath.ToSlash(dfName)
	excludes, err := readDockerignore(ctxDir)
	if err != nil {
		return container.Image{}, fmt.Errorf("%s: %w: %v", op, container.ErrInvalid, err)
	}

	tarCtx, tarW := io.Pipe()
	go func() {
		tarW.CloseWithError(writeBuildContext(tarW, ctxDir, excludes, dfName, dockerfile, external))
	}()
	defer tarCtx.Close()

	args := make(map[string]*string, len(spec.Args))
	for k, v := range spec.Args {
		args[k] = &v
	}
	var tags []string
	if spec.Tag != "" {
		tags = []string{spec.Tag}
	}
	res, err := r.api.ImageBuild(ctx, tarCtx, client.ImageBuildOptions{
		Tags:        tags,
		Dockerfile:  dfName,
		BuildArgs:   args,
		Labels:      spec.Labels,
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		if client.IsErrConnectionFailed(err) {
			return container.Image{}, wrapErr(op, err)
		}
		return container.Image{}, fmt.Errorf("%s: %w: %w", op, container.ErrBuildFailed, err)
	}
	defer res.Body.Close()
	id, err := readBuildStream(res.Body, spec.Progress)
	if err != nil {
		return container.Image{}, fmt.Errorf("%s: %w", op, err)
	}
	ref := spec.Tag
	if ref == "" {
		ref = id
	}
	if ref == "" {
		return container.Image{}, fmt.Errorf("%s: %w: the engine reported no image id", op, container.ErrBuildFailed)
	}
	img, err := r.inspectImage(ctx, ref)
	if err != nil {
		return container.Image{}, fmt.Errorf("%s: %w", op, err)
	}
	return img, nil
}

// buildMessage is one line of the classic builder's JSON stream.
type buildMessage struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Aux json.RawMessage `json:"aux"`
}

// readBuildStream copies build output to progress and returns the built
// image id. A failure becomes ErrBuildFailed quoting the output of the step
// that failed.
func readBuildStream(body io.Reader, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	var id string
	var step []string // output lines of the current step
	var partial string
	dec := json.NewDecoder(body)
	for {
		var m buildMessage
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return "", fmt.Errorf("%w: reading build output: %w", container.ErrBuildFailed, err)
		}
		if len(m.Aux) > 0 {
			var aux struct{ ID string }
			if json.Unmarshal(m.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
		text := m.Stream
		if text == "" && m.Status != "" {
			text = m.Status + "\n"
		}
		if text != "" {
			io.WriteString(progress, text)
			lines := strings.Split(partial+text, "\n")
			partial = lines[len(lines)-1]
			for _, line := range lines[:len(lines)-1] {
				if strings.HasPrefix(line, "Step ") {
					step = step[:0]
				}
				step = append(step, line)
				if len(step) > buildTailLines {
					// Keep the step header and the newest lines.
					step = append(step[:1], step[len(step)-buildTailLines+1:]...)
				}
			}
		}
		if m.Error != "" || m.ErrorDetail != nil {
			msg := m.Error
			if msg == "" {
				msg = m.ErrorDetail.Message
			}
			io.WriteString(progress, msg+"\n")
			if partial != "" {
				step = append(step, partial)
			}
			return "", fmt.Errorf("%w: %s\n%s", container.ErrBuildFailed, msg, strings.Join(step, "\n"))
		}
	}
	if id == "" {
		// Old engines only print it.
		for _, line := range step {
			if rest, ok := strings.CutPrefix(line, "Successfully built "); ok {
				id = strings.TrimSpace(rest)
			}
		}
	}
	return id, nil
}

func readDockerignore(ctxDir string) ([]string, error) {
	f, err := os.Open(filepath.Join(ctxDir, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	return patterns, nil
}

// writeBuildContext tars ctxDir, leaving out what .dockerignore excludes
// (but never the Dockerfile or .dockerignore themselves, which the builder
// reads, as the docker CLI does).
func writeBuildContext(w io.Writer, ctxDir string, excludes []string, dfName, dfPath string, external bool) error {
	var pm *patternmatcher.PatternMatcher
	if len(excludes) > 0 {
		var err error
		if pm, err = patternmatcher.New(excludes); err != nil {
			return fmt.Errorf("bad .dockerignore pattern: %w", err)
		}
	}
	tw := tar.NewWriter(w)
	parentMatch := map[string]patternmatcher.MatchInfo{}
	err := filepath.WalkDir(ctxDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(ctxDir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if pm != nil && rel != dfName && rel != ".dockerignore" {
			parentDir := filepath.ToSlash(filepath.Dir(rel))
			excluded, info, err := pm.MatchesUsingParentResults(rel, parentMatch[parentDir])
			if err != nil {
				return err
			}
			if d.IsDir() {
				parentMatch[rel] = info
			}
			if excluded {
				// A directory is still walked when an exception pattern
				// might bring something inside it back.
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		return addToTar(tw, path, rel, d)
	})
	if err != nil {
		return fmt.Errorf("build context %q: %w", ctxDir, err)
	}
	if external {
		st, err := os.Lstat(dfPath)
		if err != nil {
			return err
		}
		if err := addToTar(tw, dfPath, dfName, fs.FileInfoToDirEntry(st)); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addToTar(tw *tar.Writer, path, name string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	var link string
	if info.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	} else if !info.Mode().IsRegular() && !info.IsDir() {
		return nil // sockets, devices and pipes have no place in an image
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	if info.IsDir() {
		hdr.Name += "/"
	}
	// Ownership on the host means nothing in the image.
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

// Resolve implements container.Images.
func (r *Runtime) Resolve(ctx context.Context, ref string) (container.Image, error) {
	op := fmt.Sprintf("resolve image %q", ref)
	if ref == "" {
		return container.Image{}, fmt.Errorf("resolve image: %w: empty reference", container.ErrInvalid)
	}
	img, err := r.inspectImage(ctx, ref)
	if err == nil {
		return img, nil
	}
	if !errors.Is(err, container.ErrNotFound) {
		return container.Image{}, fmt.Errorf("%s: %w", op, err)
	}
	pull, err := r.api.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err == nil {
		err = pull.Wait(ctx)
	}
	if err != nil {
		if client.IsErrConnectionFailed(err) || ctx.Err() != nil {
			return container.Image{}, wrapErr(op, err)
		}
		return container.Image{}, fmt.Errorf("%s: %w: not local, and pulling failed: %w", op, container.ErrImageNotFound, err)
	}
	img, err = r.inspectImage(ctx, ref)
	if err != nil {
		return container.Image{}, fmt.Errorf("%s: after pull: %w", op, err)
	}
	return img, nil
}

func (r *Runtime) inspectImage(ctx context.Context, ref string) (container.Image, error) {
	res, err := r.api.ImageInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return container.Image{}, fmt.Errorf("image %q: %w: %w", ref, container.ErrImageNotFound, err)
		}
		if cerrdefs.IsInvalidArgument(err) {
			return container.Image{}, fmt.Errorf("image %q: %w: %w", ref, container.ErrInvalid, err)
		}
		return container.Image{}, wrapErr(fmt.Sprintf("inspect image %q", ref), err)
	}
	img := container.Image{ID: res.ID, Refs: slices.Clone(res.RepoTags)}
	if cfg := res.Config; cfg != nil {
		img.Labels = cfg.Labels
		for p := range cfg.ExposedPorts {
			num, proto, _ := strings.Cut(p, "/")
			if proto != "" && proto != "tcp" {
				continue
			}
			if n, err := strconv.Atoi(num); err == nil {
				img.ExposedPorts = append(img.ExposedPorts, n)
			}
		}
		slices.Sort(img.ExposedPorts)
	}
	return img, nil
}

// RemoveImage implements container.Images.
func (r *Runtime) RemoveImage(ctx context.Context, ref string) error {
	_, err := r.api.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	return wrapErr(fmt.Sprintf("remove image %q", ref), err)
}
