package certreload

// failures remembers the content (its digest, or the digest of the read error) last found unusable, so that a
// broken file is logged once however often it is read again, another broken content once more, and the recovery
// once. Its owner's lock guards it.
type failures struct {
	failed  [32]byte
	failing bool
}

// fail records that the content of digest sum does not load; it reports whether that is news (worth a line).
func (f *failures) fail(sum [32]byte) bool {
	if f.failing && f.failed == sum {
		return false
	}
	f.failed, f.failing = sum, true
	return true
}

// ok records that the files load (again); it reports whether they had not (a recovery, worth a line).
func (f *failures) ok() bool {
	was := f.failing
	f.failed, f.failing = [32]byte{}, false
	return was
}
