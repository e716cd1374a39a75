package pop3

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync/provider/mailparse"
)

// The parser itself is provider/mailparse's, and tested there; these tests cover what
// POP3 adds: the Inbox folder, and a ReceivedAt for every message although POP3 knows
// no dates.

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

var firstSeen = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestHeaderEmailReceivedAt(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want time.Time
	}{
		{"newest Received with a date", "Received: by x (no date)\nReceived: from y; Mon, 06 May 2024 08:00:00 +0000\nDate: Sun, 05 May 2024 08:00:00 +0000\n\n",
			time.Date(2024, 5, 6, 8, 0, 0, 0, time.UTC)},
		{"no Received: the Date field", "Date: Sun, 05 May 2024 08:00:00 +0000\nSubject: x\n\n", time.Date(2024, 5, 5, 8, 0, 0, 0, time.UTC)},
		{"no date at all: first seen", "Subject: x\n\n", firstSeen},
		{"a sloppy Date", "Date: Sun, 5 May 2024 08:00:00 GMT\n\n", time.Date(2024, 5, 5, 8, 0, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := headerEmail(crlf(tc.raw), firstSeen)
			require.NoError(t, err)
			assert.True(t, e.ReceivedAt.Equal(tc.want), "got %v, want %v", e.ReceivedAt, tc.want)
			assert.Equal(t, Inbox, e.Folder)
		})
	}
}

func TestHeaderEmailNoHeader(t *testing.T) {
	for _, raw := range [][]byte{nil, crlf("\nno header\n")} {
		_, err := headerEmail(raw, firstSeen)
		var pe *mailparse.ParseError
		assert.True(t, errors.As(err, &pe), "%v", err)
	}
}
