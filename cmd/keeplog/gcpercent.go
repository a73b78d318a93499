package main

// defaultGCPercent is the garbage collector's target (what GOGC sets) unless the GOGC environment variable is set.
// Most of keeplog's heap is long-lived: the records, usage and archive state of every volume and pod directory on the
// node (about 20 MB at 10,000 retained directories), and once settled it allocates little. Go's default of 100 lets
// the heap grow by as much again before collecting, headroom that keeplog's short-lived garbage never needed; 50
// halves it for a few more collections of a heap that changes slowly (docs/benchmarks.md has the figures; Prometheus
// lowered its default for the same reason). GOGC in the environment (the chart's extraEnv) still wins.
const defaultGCPercent = 50

// applyGCPercent sets defaultGCPercent through set (debug.SetGCPercent) unless lookup (os.LookupEnv) finds GOGC, and
// says whether it did.
func applyGCPercent(lookup func(string) (string, bool), set func(int) int) bool {
	if _, ok := lookup("GOGC"); ok {
		return false
	}
	set(defaultGCPercent)
	return true
}
