package archiver

import (
	"errors"
	"sync"
)

// overlapper is an Upload whose Writes may run concurrently, at distinct offsets: an SFTP file written with WriteAt.
// An S3 multipart upload's parts go one after another.
type overlapper interface {
	overlap() int
}

// writeDepth is how many chunk writes an upload keeps in flight. One write returns only once the server
// acknowledged its last byte, so with one at a time the link idles for a round trip after every chunk (on a 20 ms
// round trip that was 1.28 s of a 512 MiB upload, 1.27x OpenSSH sftp's time). A bandwidth-limited upload sends one
// chunk at a time: its writes read through the limiter, from the file's one offset.
func writeDepth(up Upload, limited bool) int {
	if o, ok := up.(overlapper); ok && !limited {
		return max(o.overlap(), 1)
	}
	return 1
}

// flight is one chunk write: its result arrives on done.
type flight struct {
	p    *Progress
	b    prepared // the buffer set the write reads; freed once it returned
	owns bool     // b is the write's to free (false: its bytes were copied, or there is none)
	done chan error
}

// chunkSender keeps up to depth chunk writes in flight and reports each acknowledged prefix in file order: a
// chunk's progress is reported (journalled) only once it and every chunk before it were acknowledged, so the
// journal holds only prefixes the server has, and an interruption sends at most depth chunks twice. After the
// first failed write nothing more is sent; every write has returned before an error is given back (with the
// failures of the writes after it), so that the caller may close the upload.
type chunkSender struct {
	depth int
	write func(off int64, out []byte) error // one Upload.Write
	acked func(*Progress)                   // the prefix up to it was acknowledged
	free  func(prepared)                    // a buffer set is no longer read

	queue  []*flight
	failed chan struct{} // closed at the first failed write
	once   sync.Once
}

func newChunkSender(depth int, write func(int64, []byte) error, acked func(*Progress), free func(prepared)) *chunkSender {
	return &chunkSender{depth: max(depth, 1), write: write, acked: acked, free: free, failed: make(chan struct{})}
}

// send starts writing out at off, once fewer than depth writes are in flight; p is the progress it completes.
// When owns, out is b's and b is freed after the write; else b is freed now.
func (s *chunkSender) send(off int64, out []byte, p *Progress, b prepared, owns bool) error {
	if !owns {
		s.free(b)
	}
	if err := s.room(); err != nil {
		if owns {
			s.free(b)
		}
		return err
	}
	f := &flight{p: p, b: b, owns: owns, done: make(chan error, 1)}
	s.queue = append(s.queue, f)
	go func() {
		err := s.write(off, out)
		if err != nil {
			s.once.Do(func() { close(s.failed) })
		}
		f.done <- err
	}()
	return nil
}

// room waits until fewer than depth writes are in flight, and reports every write at the head that has returned
// meanwhile (so that the journal does not lag behind the server); after a failed write it returns that failure.
func (s *chunkSender) room() error {
	for len(s.queue) >= s.depth || len(s.queue) > 0 && len(s.queue[0].done) > 0 {
		if err := s.complete(); err != nil {
			return err
		}
	}
	select {
	case <-s.failed:
		return s.flush()
	default:
		return nil
	}
}

// complete waits for the oldest write and reports its prefix; on its failure the rest are waited for, unreported.
func (s *chunkSender) complete() error {
	f := s.queue[0]
	s.queue = s.queue[1:]
	err := <-f.done
	if f.owns {
		s.free(f.b)
	}
	if err != nil {
		return errors.Join(err, s.drain())
	}
	s.acked(f.p)
	return nil
}

// flush waits for every write in flight and reports their prefixes in order; it returns the first failure.
func (s *chunkSender) flush() error {
	for len(s.queue) > 0 {
		if err := s.complete(); err != nil {
			return err
		}
	}
	return nil
}

// drain waits for every write in flight without reporting any (a write before them failed) and returns their
// failures: one that discarded the partial file (errStartOver) must reach the caller too.
func (s *chunkSender) drain() error {
	var errs []error
	for _, f := range s.queue {
		errs = append(errs, <-f.done)
		if f.owns {
			s.free(f.b)
		}
	}
	s.queue = nil
	return errors.Join(errs...)
}
