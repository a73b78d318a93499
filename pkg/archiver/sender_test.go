package archiver

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeWrites is a chunkSender's server: each write at an offset waits for its release (a result) and records when
// it started, so a test decides the order in which chunks are acknowledged.
type fakeWrites struct {
	mu       sync.Mutex
	started  []int64
	inFlight int
	release  map[int64]chan error
	startedC chan int64
}

func newFakeWrites(offs ...int64) *fakeWrites {
	w := &fakeWrites{release: map[int64]chan error{}, startedC: make(chan int64, len(offs))}
	for _, off := range offs {
		w.release[off] = make(chan error, 1)
	}
	return w
}

func (w *fakeWrites) write(off int64, _ []byte) error {
	w.mu.Lock()
	w.started = append(w.started, off)
	w.inFlight++
	rel := w.release[off]
	w.mu.Unlock()
	w.startedC <- off
	err := <-rel
	w.mu.Lock()
	w.inFlight--
	w.mu.Unlock()
	return err
}

func (w *fakeWrites) waitStarted(t *testing.T, off int64) {
	t.Helper()
	select {
	case got := <-w.startedC:
		if got != off {
			t.Fatalf("the write at %d started, want the one at %d", got, off)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the write at %d did not start while the ones before it were in flight", off)
	}
}

func (w *fakeWrites) state() (started []int64, inFlight int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.started), w.inFlight
}

// ackLog records the prefixes a chunkSender reports and the buffer sets it frees.
type ackLog struct {
	mu    sync.Mutex
	acked []int64
	freed []int64
}

func (l *ackLog) ack(p *Progress) { l.mu.Lock(); l.acked = append(l.acked, p.Stored); l.mu.Unlock() }
func (l *ackLog) free(b prepared) { l.mu.Lock(); l.freed = append(l.freed, b.p.Stored); l.mu.Unlock() }
func (l *ackLog) get() (acked, freed []int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acked), slices.Clone(l.freed)
}

const testChunk = 10

func chunkAt(off int64) ([]byte, *Progress, prepared) {
	p := &Progress{Stored: off + testChunk}
	return make([]byte, testChunk), p, prepared{p: p}
}

// sendAsync runs send for the chunk at off and returns its result channel.
func sendAsync(s *chunkSender, off int64) chan error {
	out, p, b := chunkAt(off)
	c := make(chan error, 1)
	go func() { c <- s.send(off, out, p, b, true) }()
	return c
}

// twoInFlight sends the chunks at 0 and 10 and waits until both writes started.
func twoInFlight(t *testing.T, w *fakeWrites, s *chunkSender) {
	t.Helper()
	wantNil(t, sendAsync(s, 0))
	w.waitStarted(t, 0)
	wantNil(t, sendAsync(s, 10))
	w.waitStarted(t, 10)
}

func wantNil(t *testing.T, c chan error) {
	t.Helper()
	select {
	case err := <-c:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("send did not return")
	}
}

// The next chunk goes while the one before it waits for its acknowledgements; a prefix is reported only once it
// and every chunk before it were acknowledged, in order, even when a later chunk is acknowledged first; a buffer
// set is freed only after its write returned; never more than depth writes are in flight.
func TestChunkSenderOverlapsWritesAndReportsPrefixesInOrder(t *testing.T) {
	w := newFakeWrites(0, 10, 20)
	var l ackLog
	s := newChunkSender(2, w.write, l.ack, l.free)

	twoInFlight(t, w, s)      // the second send returns while chunk 0 is still unacknowledged
	third := sendAsync(s, 20) // two in flight: waits for chunk 0

	w.release[10] <- nil // chunk 1 acknowledged first: nothing to report yet
	time.Sleep(50 * time.Millisecond)
	if acked, freed := l.get(); len(acked) != 0 || len(freed) != 0 {
		t.Fatalf("after chunk 1 alone: acked %v freed %v, want nothing (chunk 0 is not acknowledged)", acked, freed)
	}
	if started, _ := w.state(); len(started) != 2 {
		t.Fatalf("writes started %v with two in flight, want 2", started)
	}
	w.release[0] <- nil
	wantNil(t, third)
	w.waitStarted(t, 20)
	if acked, freed := l.get(); !slices.Equal(acked, []int64{10, 20}) || !slices.Equal(freed, []int64{10, 20}) {
		t.Fatalf("after chunks 0 and 1: acked %v freed %v, want [10 20] both", acked, freed)
	}
	w.release[20] <- nil
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	if acked, freed := l.get(); !slices.Equal(acked, []int64{10, 20, 30}) || !slices.Equal(freed, []int64{10, 20, 30}) {
		t.Fatalf("after flush: acked %v freed %v, want [10 20 30] both", acked, freed)
	}
}

// A later chunk that fails after an earlier one succeeded: the earlier prefix is reported, the failure returned,
// and nothing more is sent.
func TestChunkSenderStopsAtALaterFailure(t *testing.T) {
	w := newFakeWrites(0, 10, 20)
	var l ackLog
	s := newChunkSender(2, w.write, l.ack, l.free)
	boom := errors.New("connection lost")
	twoInFlight(t, w, s)
	w.release[10] <- boom
	time.Sleep(50 * time.Millisecond)
	w.release[0] <- nil
	err := <-sendAsync(s, 20)
	if !errors.Is(err, boom) {
		t.Fatalf("send after a failed write: %v, want %v", err, boom)
	}
	started, inFlight := w.state()
	acked, freed := l.get()
	if !slices.Equal(started, []int64{0, 10}) || inFlight != 0 || !slices.Equal(acked, []int64{10}) || len(freed) != 3 {
		t.Fatalf("started %v in flight %d acked %v freed %v; want [0 10], 0, [10], and all 3 buffer sets freed",
			started, inFlight, acked, freed)
	}
}

// An earlier chunk that fails while a later one succeeded: nothing is reported past the failure (the later chunk's
// prefix has a hole), and the error comes back only after every write returned, so the upload may be closed.
func TestChunkSenderReportsNothingPastAFailure(t *testing.T) {
	w := newFakeWrites(0, 10)
	var l ackLog
	s := newChunkSender(2, w.write, l.ack, l.free)
	boom := errors.New("no space")
	twoInFlight(t, w, s)
	w.release[0] <- boom
	flushed := make(chan error, 1)
	go func() { flushed <- s.flush() }()
	select {
	case err := <-flushed:
		t.Fatalf("flush returned (%v) with the write at 10 still in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	w.release[10] <- nil
	if err := <-flushed; !errors.Is(err, boom) {
		t.Fatalf("flush: %v, want %v", err, boom)
	}
	_, inFlight := w.state()
	if acked, freed := l.get(); len(acked) != 0 || len(freed) != 2 || inFlight != 0 {
		t.Fatalf("acked %v freed %v in flight %d; want nothing acked, both freed, none in flight", acked, freed, inFlight)
	}
}

// With depth 1 (an S3 upload, a bandwidth limit) the next write starts only after the one before was reported.
func TestChunkSenderDepthOneIsSequential(t *testing.T) {
	w := newFakeWrites(0, 10)
	var l ackLog
	s := newChunkSender(1, w.write, l.ack, l.free)
	wantNil(t, sendAsync(s, 0))
	w.waitStarted(t, 0)
	second := sendAsync(s, 10)
	time.Sleep(50 * time.Millisecond)
	if started, _ := w.state(); len(started) != 1 {
		t.Fatalf("writes started %v before the first was acknowledged, want 1", started)
	}
	w.release[0] <- nil
	wantNil(t, second)
	w.waitStarted(t, 10)
	if acked, _ := l.get(); !slices.Equal(acked, []int64{10}) {
		t.Fatalf("acked %v when the second write started, want [10]", acked)
	}
	w.release[10] <- nil
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
}

func TestWriteDepth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		up      Upload
		limited bool
		want    int
	}{
		{"sftp", &sftpUpload{}, false, 2},
		{"sftp with a bandwidth limit", &sftpUpload{}, true, 1},
		{"s3", &s3Upload{}, false, 1},
	} {
		if got := writeDepth(tc.up, tc.limited); got != tc.want {
			t.Errorf("%s: depth %d, want %d", tc.name, got, tc.want)
		}
	}
}

// An earlier transient failure and a later one that discarded the partial file: the caller learns both, so the
// next attempt starts over instead of trusting a journalled prefix the server no longer has.
func TestChunkSenderReturnsALaterStartOver(t *testing.T) {
	w := newFakeWrites(0, 10)
	var l ackLog
	s := newChunkSender(2, w.write, l.ack, l.free)
	twoInFlight(t, w, s)
	lost := errors.New("connection lost")
	w.release[0] <- lost
	w.release[10] <- startOver(errors.New("server full"))
	err := s.flush()
	if !errors.Is(err, lost) || !errors.Is(err, errStartOver) {
		t.Fatalf("flush: %v, want both the connection loss and the start-over", err)
	}
}
