package mailparse

import (
	"bytes"
	"encoding/base64"
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

// BenchmarkDecodeBase64 decodes a 150 KB attachment as MIME encoders lay it out (lines
// of 76 characters).
func BenchmarkDecodeBase64(b *testing.B) {
	data := bytes.Repeat([]byte{0, 1, 2, 0xff, 'x', 'y', 'z'}, 150_000/7)
	enc := base64.StdEncoding.EncodeToString(data)
	var src []byte
	for len(enc) > 76 {
		src = append(append(src, enc[:76]...), "\r\n"...)
		enc = enc[76:]
	}
	src = append(append(src, enc...), "\r\n"...)
	b.Run("lines", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			if got, ok := decodeBase64(src); !ok || len(got) != len(data) {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("whole", func(b *testing.B) { // what decodeBase64 falls back to
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			dst := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
			if n, err := base64.StdEncoding.Decode(dst, src); err != nil || n != len(data) {
				b.Fatal("not decoded")
			}
		}
	})
}
