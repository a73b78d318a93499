// Package units formats sizes for people (log lines, Events).
package units

import "fmt"

// Bytes formats n in binary units with one decimal: "512 B", "1.5 KiB", "8.0 GiB".
func Bytes[T ~int64 | ~uint64](n T) string {
	const unit = 1024
	if n < 0 {
		return fmt.Sprintf("%d B", int64(n))
	}
	if n < unit {
		return fmt.Sprintf("%d B", uint64(n))
	}
	div, exp := uint64(unit), 0
	for v := uint64(n) / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
