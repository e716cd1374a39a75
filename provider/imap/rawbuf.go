package imap

import "sync"

// rawPools recycle the buffers whole messages are read into, by size class: a message
// is parsed into its email, which keeps copies of what it needs, and its buffer then
// serves another. Without them, reading a mailbox allocates (and clears) as many bytes
// as the mailbox holds, and the garbage collector runs all the more often.
var rawPools [rawClasses]sync.Pool

const (
	rawMinShift = 12 // the smallest class: 4 KiB
	rawClasses  = 9  // up to 1 MiB; larger messages get buffers of their own
)

// rawClass returns the class of a buffer of n bytes, or -1 when none fits.
func rawClass(n int) int {
	for c := range rawClasses {
		if n <= 1<<(rawMinShift+c) {
			return c
		}
	}
	return -1
}

// getRaw returns a buffer of n bytes, recycled when one is free.
func getRaw(n int) []byte {
	c := rawClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	if b, ok := rawPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<(rawMinShift+c))
}

// putRaw gives back a buffer from getRaw; the caller no longer refers to it.
func putRaw(b []byte) {
	if c := rawClass(cap(b)); c >= 0 && cap(b) == 1<<(rawMinShift+c) {
		rawPools[c].Put(&b)
	}
}
