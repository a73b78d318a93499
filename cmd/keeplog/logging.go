package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// setupLogging makes --v govern every logger keeplog and its libraries use, in both formats: klog's own calls
// (klog.V(n).InfoS), contextual loggers (klog.Background(), klog.FromContext: what client-go's request logging and
// the components' Log use) and log/slog's default.
//
// klog checks --v only for its own klog.V calls; a contextual logger asks its sink. The JSON handler therefore
// gets the level --v allows: klog's V(n) is slog level -n (logr's slog bridge), so -v=2 lets V(0)..V(2) through
// and keeps client-go's V(6)–V(9) request lines and hex-dumped bodies out, which at level -128 filled 12 MB in six
// minutes. k8s.io/component-base/logs/json would do the same but adds zap and about 1.1 MB to the binary.
func setupLogging(format string, fs *flag.FlagSet, stderr io.Writer) error {
	v, err := strconv.Atoi(fs.Lookup("v").Value.String())
	if err != nil {
		return fmt.Errorf("-v: %w", err)
	}
	if format != "json" {
		// Text: klog's own logger honours --v for contextual loggers; slog goes through it too.
		slog.SetDefault(slog.New(logr.ToSlogHandler(klog.Background())))
		return nil
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.Level(-v)}))
	klog.SetSlogLogger(logger)
	slog.SetDefault(logger)
	return nil
}
