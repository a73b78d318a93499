package jitter

import (
	"fmt"
	"testing"
	"time"
)

func TestOffsetIsStableAndInRange(t *testing.T) {
	const d = time.Hour
	for i := 0; i < 1000; i++ {
		key := fmt.Sprintf("default_pod-%d_%08d-0000-0000-0000-000000000000", i, i)
		o := Offset(key, d)
		if o < 0 || o >= d {
			t.Fatalf("Offset(%q, %s) = %s: outside [0, %s)", key, d, o, d)
		}
		if again := Offset(key, d); again != o {
			t.Fatalf("Offset(%q) = %s, then %s: not stable", key, o, again)
		}
	}
}

func TestOffsetIsZeroWithoutAPeriod(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		if o := Offset("default_a_b", d); o != 0 {
			t.Errorf("Offset(_, %s) = %s, want 0", d, o)
		}
	}
}

// Names that differ in one character (a CronJob's pods) land all over the period: each tenth of it gets between
// 8 and 12 % of 10,000 names (a fair split is 10 %).
func TestOffsetSpreadsSimilarNames(t *testing.T) {
	const n, buckets = 10000, 10
	d := time.Duration(buckets) * time.Minute
	var count [buckets]int
	for i := 0; i < n; i++ {
		count[Offset(fmt.Sprintf("batch_report-2961%04d-x7k2p_%d", i, i), d)/time.Minute]++
	}
	for b, c := range count {
		if c < n*8/100 || c > n*12/100 {
			t.Errorf("tenth %d of the period got %d of %d names (all: %v)", b, c, n, count)
		}
	}
}
