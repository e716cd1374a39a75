package mailparse

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 5 << 20: "5 MiB", 3 << 30: "3 GiB",
		1 << 40: "1 TiB", 1 << 50: "1024 TiB", math.MaxInt64: "8388608 TiB",
	} {
		assert.Equal(t, want, ByteSize(n), "%d", n)
	}
}
