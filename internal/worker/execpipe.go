package worker

import (
	"io"
	"sync"
)

// execPipeSize is how much of an exec process's output waits for the
// script to read it before the process itself has to wait: what a Linux
// pipe holds.
const execPipeSize = 64 << 10

// execPipe carries one output stream of an exec process to the script.
// Unlike io.Pipe it holds up to execPipeSize bytes, so a process that
// writes a little and exits is done, and its exitCode settles, whether or
// not the script reads the output, as on Cloudflare; a process that writes
// more waits for the script, as it would on a full pipe. Its methods are
// safe for concurrent use (stdout and stderr may share one).
type execPipe struct {
	mu       sync.Mutex
	readable sync.Cond // data came, the writer closed, or the reader did
	writable sync.Cond // room was made, or the reader closed
	buf      []byte
	werr     error // the writer's close: io.EOF or its error
	rclosed  bool
}

func newExecPipe() *execPipe {
	p := &execPipe{}
	p.readable.L = &p.mu
	p.writable.L = &p.mu
	return p
}

// Write buffers b, waiting for room while the buffer is full.
func (p *execPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for len(b) > 0 {
		for len(p.buf) >= execPipeSize && !p.rclosed && p.werr == nil {
			p.writable.Wait()
		}
		if p.rclosed || p.werr != nil {
			return n, io.ErrClosedPipe
		}
		k := min(len(b), execPipeSize-len(p.buf))
		p.buf = append(p.buf, b[:k]...)
		b, n = b[k:], n+k
		p.readable.Broadcast()
	}
	return n, nil
}

// CloseWithError ends the stream: the reader gets what is buffered, then
// err, or io.EOF when err is nil.
func (p *execPipe) CloseWithError(err error) error {
	if err == nil {
		err = io.EOF
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.werr == nil {
		p.werr = err
	}
	p.readable.Broadcast()
	p.writable.Broadcast()
	return nil
}

// Read waits for output and returns what is buffered.
func (p *execPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && p.werr == nil && !p.rclosed {
		p.readable.Wait()
	}
	if p.rclosed {
		return 0, io.ErrClosedPipe
	}
	if len(p.buf) == 0 {
		return 0, p.werr
	}
	n := copy(b, p.buf)
	p.buf = append(p.buf[:0], p.buf[n:]...)
	p.writable.Broadcast()
	return n, nil
}

// Close is the reader going away (the script cancelled the stream): what
// is buffered is dropped and writes fail from then on.
func (p *execPipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rclosed = true
	p.buf = nil
	p.readable.Broadcast()
	p.writable.Broadcast()
	return nil
}
