package filter

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Thread-Index as Outlook writes it: header block (FILETIME 0x01D2... and a GUID)
// plus one reply block.
func sampleThreadIndex(t *testing.T) (ThreadIndex, string) {
	t.Helper()
	ti := ThreadIndex{
		Start: time.Date(2024, 5, 1, 9, 30, 0, 0, time.UTC),
		GUID:  [16]byte{0x3b, 0x2d, 0x4e, 0x1f, 0x8a, 0x11, 0x4c, 0x22, 0x9f, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07},
		Children: []ThreadChild{
			{Delta: 90 * time.Minute, Random: 0xa, Sequence: 1},
			{Delta: 400 * 24 * time.Hour, Random: 0x3, Sequence: 2}, // needs the coarse code
		},
	}
	return ti, ti.String()
}

func TestThreadIndexRoundTrip(t *testing.T) {
	ti, s := sampleThreadIndex(t)
	raw, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	require.Len(t, raw, 22+5*2)
	assert.Equal(t, byte(0x01), raw[0], "the FILETIME's top byte is 0x01 for current dates")

	got, err := DecodeThreadIndex(s)
	require.NoError(t, err)
	assert.Equal(t, ti.GUID, got.GUID)
	assert.WithinDuration(t, ti.Start, got.Start, 7*time.Millisecond, "48 bits of FILETIME: 6.5 ms")
	require.Len(t, got.Children, 2)
	assert.InDelta(t, float64(ti.Children[0].Delta), float64(got.Children[0].Delta), float64(27*time.Millisecond))
	assert.InDelta(t, float64(ti.Children[1].Delta), float64(got.Children[1].Delta), float64(time.Second))
	assert.Equal(t, uint8(0xa), got.Children[0].Random)
	assert.Equal(t, uint8(2), got.Children[1].Sequence)
	assert.Equal(t, "3b2d4e1f8a114c229f01020304050607", got.ConversationID())

	id, err := ConversationID(s)
	require.NoError(t, err)
	assert.Equal(t, got.ConversationID(), id)
}

func TestThreadIndexLenient(t *testing.T) {
	_, s := sampleThreadIndex(t)
	for name, v := range map[string]string{
		"no padding":    strings.TrimRight(s, "="),
		"folded":        s[:10] + "\r\n " + s[10:],
		"leading space": "  " + s,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeThreadIndex(v)
			assert.NoError(t, err)
		})
	}
}

func TestThreadIndexInvalid(t *testing.T) {
	for name, v := range map[string]string{
		"empty":        "",
		"not base64":   "!!!!",
		"short":        base64.StdEncoding.EncodeToString(make([]byte, 21)),
		"bad child":    base64.StdEncoding.EncodeToString(make([]byte, 22+3)),
		"too long":     strings.Repeat("A", maxThreadIndexLen+4),
		"url alphabet": strings.ReplaceAll(base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\xfb", 22))), "+", "-"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeThreadIndex(v)
			assert.True(t, errors.Is(err, ErrThreadIndex), "%v", err)
		})
	}
}

func TestThreadIndexAncestry(t *testing.T) {
	root := NewThreadIndex(time.Now())
	raw, _ := base64.StdEncoding.DecodeString(root)
	child := base64.StdEncoding.EncodeToString(append(raw, 1, 2, 3, 4, 5))
	other := NewThreadIndex(time.Now())
	assert.True(t, IsAncestorOf(root, child))
	assert.False(t, IsAncestorOf(child, root))
	assert.False(t, IsAncestorOf(root, root))
	assert.False(t, IsAncestorOf(other, child))
	assert.False(t, IsAncestorOf("junk", child))

	a, _ := ConversationID(root)
	b, _ := ConversationID(child)
	c, _ := ConversationID(other)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
}
