package pop3

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mathrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dovecotUIDLs returns n UIDLs in Dovecot's default format, "%08Xu%08Xv".
func dovecotUIDLs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%08X%08X", i+1, 0x6b0681fa)
	}
	return out
}

// dovecotGaps returns n Dovecot UIDLs whose UIDs are 1 to 20 apart, as in a mailbox
// where messages were deleted.
func dovecotGaps(n int) []string {
	out := make([]string, n)
	uid := 0
	for i := range out {
		uid += 1 + mathrand.IntN(20)
		out[i] = fmt.Sprintf("%08X%08X", uid, 0x6b0681fa)
	}
	return out
}

// randomUIDLs returns n random UIDLs of 2*size hex characters: the worst case.
func randomUIDLs(n, size int) []string {
	out := make([]string, n)
	for i := range out {
		b := make([]byte, size)
		rand.Read(b)
		out[i] = hex.EncodeToString(b)
	}
	return out
}

func TestCursorRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"empty", nil, nil},
		{"one", []string{"abc"}, []string{"abc"}},
		{"unsorted with duplicates", []string{"b", "a", "b", "ab", "a"}, []string{"a", "ab", "b"}},
		{"dovecot", dovecotUIDLs(500), dovecotUIDLs(500)},
		{"long UIDLs", []string{string(make([]byte, 300)) + "x", "y"}, []string{string(make([]byte, 300)) + "x", "y"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur := encodeCursor(tc.in)
			require.NotNil(t, cur)
			got, err := decodeCursor(cur)
			require.NoError(t, err)
			if len(tc.want) == 0 {
				assert.Empty(t, got)
				return
			}
			assert.Equal(t, tc.want, got)
		})
	}
	got, err := decodeCursor(nil)
	require.NoError(t, err)
	assert.Empty(t, got, "a nil cursor is the empty set")
}

func TestCursorDeterministic(t *testing.T) {
	uids := append(dovecotUIDLs(300), randomUIDLs(50, 8)...)
	want := encodeCursor(uids)
	for range 5 {
		shuffled := slices.Clone(uids)
		mathrand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		assert.Equal(t, want, encodeCursor(append(shuffled, shuffled[:10]...)))
	}
}

func TestCursorRejects(t *testing.T) {
	valid := encodeCursor([]string{"a", "b"})
	tests := map[string][]byte{
		"unknown version": {9, 0},
		"no count":        {cursorFrontCoded},
		"truncated":       valid[:len(valid)-1],
		"trailing bytes":  append(slices.Clone(valid), 0),
		"out of order":    {cursorFrontCoded, 2, 0, 1, 'b', 0, 1, 'a'},
		"duplicate":       {cursorFrontCoded, 2, 0, 1, 'a', 0, 1, 'a'},
		"shared too long": {cursorFrontCoded, 2, 0, 1, 'a', 5, 1, 'b'},
		"huge count":      {cursorFrontCoded, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad deflate":     {cursorDeflated, 1, 2, 3},
	}
	for name, cur := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := decodeCursor(cur)
			assert.ErrorIs(t, err, errCursor)
		})
	}
}

// TestCursorSize records what a cursor costs per 1,000 messages.
func TestCursorSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		uids []string
		max  int // bytes per 1,000 messages
	}{
		{"dovecot", dovecotUIDLs(1000), 1000},
		{"dovecot with gaps", dovecotGaps(1000), 3000},
		{"random 16 hex", randomUIDLs(1000, 8), 10000},
		{"random 32 hex", randomUIDLs(1000, 16), 19000},
	} {
		cur := encodeCursor(tc.uids)
		t.Logf("%s: %d bytes per 1,000 messages (version %d)", tc.name, len(cur), cur[0])
		assert.LessOrEqual(t, len(cur), tc.max, tc.name)
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(nil))
	f.Add(encodeCursor([]string{"a", "ab", "b"}))
	f.Add(encodeCursor(dovecotUIDLs(100)))
	f.Add([]byte{cursorFrontCoded, 2, 0, 1, 'a', 1, 1, 'b'})
	f.Fuzz(func(t *testing.T, cur []byte) {
		uids, err := decodeCursor(cur)
		if err != nil {
			return
		}
		again, err := decodeCursor(encodeCursor(uids))
		if err != nil {
			t.Fatalf("re-encoding a decoded cursor: %v", err)
		}
		if len(uids) != len(again) || !slices.Equal(uids, again) {
			t.Fatalf("round trip changed %q into %q", uids, again)
		}
	})
}
