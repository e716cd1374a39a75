package mailparse

import (
	netmail "net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-message"
)

// dateLayouts are forms of dates seen in the wild that net/mail does not read.
var dateLayouts = []string{
	"Mon, 2 Jan 2006 15:04:05 -0700 (MST)",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04:05 -0700",
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon, 2 Jan 06 15:04:05 -0700",
	"Monday, January 2, 2006 3:04 PM",
	"Mon, 2 Jan 2006 15:04:05",
	time.RFC3339,
}

// trailingComment matches a comment at the end of a date, such as "(PDT)".
var trailingComment = regexp.MustCompile(`\s*\([^()]*\)\s*$`)

// ParseDate reads an RFC 5322 date (a Date field, the date of a Received field)
// leniently: what net/mail reads, then forms seen in the wild (a missing day name or
// seconds, a zone name for an offset, ctime, RFC 3339). It reports false, with the
// zero time, when it cannot.
func ParseDate(v string) (time.Time, bool) {
	v = strings.Join(strings.Fields(v), " ")
	if v == "" {
		return time.Time{}, false
	}
	if t, err := netmail.ParseDate(v); err == nil {
		return t, true
	}
	for _, s := range []string{v, trailingComment.ReplaceAllString(v, "")} {
		for _, layout := range dateLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// receivedAt returns the date of the newest (topmost) Received field that has one: when
// the delivering server took the message in.
func receivedAt(h message.Header) time.Time {
	for _, v := range h.Values("Received") {
		if i := strings.LastIndexByte(v, ';'); i >= 0 {
			if t, ok := ParseDate(v[i+1:]); ok {
				return t
			}
		}
	}
	return time.Time{}
}
