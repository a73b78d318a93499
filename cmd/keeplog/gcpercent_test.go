package main

import (
	"runtime/debug"
	"testing"
)

// TestGCPercentDefaultAndOverride: without GOGC in the environment keeplog sets its lower default in the runtime;
// with GOGC set (whatever its value) the runtime keeps what the environment said.
func TestGCPercentDefaultAndOverride(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	noEnv := func(string) (string, bool) { return "", false }
	if !applyGCPercent(noEnv, debug.SetGCPercent) {
		t.Fatal("GOGC unset: the default was not applied")
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("GOGC unset: the runtime's percent is %d, want %d", got, defaultGCPercent)
	}
	for _, v := range []string{"100", "off", ""} {
		env := func(k string) (string, bool) { return v, k == "GOGC" }
		if applyGCPercent(env, debug.SetGCPercent) {
			t.Fatalf("GOGC=%q: keeplog overrode it", v)
		}
		if got := debug.SetGCPercent(100); got != 100 {
			t.Fatalf("GOGC=%q: the runtime's percent changed to %d", v, got)
		}
	}
}
