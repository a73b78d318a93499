package fstest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TrashChurn is the garbage collector's churn, for d: one goroutine calls makeDir(i) for i = 0, 1, ... (it makes a
// pod directory with sub-directories, as the caller's component sees them appear, and returns its path); the test's
// goroutine moves each into trash (as <base>~<n>) 2ms after it appeared, once the component had a moment to watch
// it, and removes it. It returns how many directories went through the trash; any error fails the test.
func TrashChurn(t testing.TB, trash string, d time.Duration, makeDir func(i int) (string, error)) int {
	t.Helper()
	if err := os.MkdirAll(trash, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	made := make(chan string, 1024)
	errs := make(chan error, 1)
	go func() {
		defer close(made)
		for i := 0; ctx.Err() == nil; i++ {
			dir, err := makeDir(i)
			if err != nil {
				errs <- err
				return
			}
			made <- dir
			time.Sleep(time.Millisecond)
		}
	}()
	n := 0
	for dir := range made {
		time.Sleep(2 * time.Millisecond)
		gone := filepath.Join(trash, fmt.Sprintf("%s~%d", filepath.Base(dir), n))
		if err := os.Rename(dir, gone); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(gone); err != nil {
			t.Fatal(err)
		}
		n++
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	return n
}
