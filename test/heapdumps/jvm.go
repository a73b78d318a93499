package heapdumps

import (
	"bufio"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed HeapFill.java
var heapFillSource []byte

// liveShare is the live heap HeapFill is filled to, as a share of the wanted dump size: an HPROF dump of this mix
// is about 1.24× the heap in use (object and array records carry IDs, class IDs and lengths).
const liveShare = 0.8

// compile writes the embedded source into dir/classes-<hash> and runs javac there once; the hash keeps a class
// compiled from an older source from being used.
func compile(ctx context.Context, dir string) (string, error) {
	sum := sha256.Sum256(heapFillSource)
	classes := filepath.Join(dir, "classes-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(classes, "HeapFill.class")); err == nil {
		return classes, nil
	}
	if err := os.MkdirAll(classes, 0o755); err != nil {
		return "", err
	}
	src := filepath.Join(classes, "HeapFill.java")
	if err := os.WriteFile(src, heapFillSource, 0o644); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "javac", "-d", classes, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("javac (apt-get install -y openjdk-17-jdk-headless): %v: %s", err, out)
	}
	return classes, nil
}

// dumpJVM runs HeapFill to s.Size·liveShare of live heap, takes a dump of it with jcmd into out, and ends the JVM
// by closing its stdin (killed by its PID if it does not exit).
func dumpJVM(ctx context.Context, classes string, s Spec, out string) error {
	live := int64(float64(s.Size) * liveShare)
	xmx := live*3/2 + 64<<20 // headroom for the serial collector's young generation
	cmd := exec.CommandContext(ctx, "java", "-XX:+UseSerialGC", "-Xms"+strconv.FormatInt(xmx>>20, 10)+"m",
		"-Xmx"+strconv.FormatInt(xmx>>20, 10)+"m", "-cp", classes, "HeapFill", strconv.FormatInt(live, 10),
		strconv.FormatInt(s.Seed, 10))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("java (apt-get install -y openjdk-17-jdk-headless): %w", err)
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill() // by its PID
			<-done
		}
	}()
	if err := waitReady(stdout); err != nil {
		return fmt.Errorf("HeapFill %d/%d: %w; stderr: %s", s.Size, s.Seed, err, stderr.String())
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	if b, err := exec.CommandContext(ctx, "jcmd", pid, "GC.heap_dump", out).CombinedOutput(); err != nil {
		return fmt.Errorf("jcmd %s GC.heap_dump: %v: %s", pid, err, b)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return nil
}

// waitReady reads HeapFill's stdout until its READY line.
func waitReady(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "READY ") {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("exited before READY")
}
