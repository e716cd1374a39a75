package mailparse

import (
	netmail "net/mail"
	"regexp"
	"strings"
	"time"
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
	if t, ok := parseUsualDate(v); ok {
		return t, true
	}
	return parseDateSlow(v)
}

// parseDateSlow is ParseDate for the dates parseUsualDate does not read.
func parseDateSlow(v string) (time.Time, bool) {
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
func receivedAt(h fields) time.Time {
	for _, v := range h.Values("Received") {
		if i := strings.LastIndexByte(v, ';'); i >= 0 {
			if t, ok := ParseDate(v[i+1:]); ok {
				return t
			}
		}
	}
	return time.Time{}
}

// parseUsualDate reads the form nearly every date takes, "[Mon, ]2 Jan 2006 15:04[:05]
// -0700[ (comment)]", without the allocations of trying net/mail's layouts one after
// the other (a tenth of the time spent parsing a header). It reports false for anything
// else, which ParseDate then reads the slow way; what it reads, it reads as net/mail
// does, time zone included.
func parseUsualDate(v string) (time.Time, bool) {
	s := dateScanner{s: v}
	s.space()
	if w := s.word(); dayName(w) && s.expect(',') {
		// The day of the week is not checked against the date, as in time.Parse.
		if !s.space() {
			return time.Time{}, false
		}
	} else {
		s.i = 0
		s.space()
	}
	day, ok := s.number(1, 2)
	if !ok || !s.space() {
		return time.Time{}, false
	}
	month := monthNumber(s.word())
	if month == 0 || !s.space() {
		return time.Time{}, false
	}
	year, ok := s.number(4, 4)
	if !ok || !s.space() {
		return time.Time{}, false
	}
	hour, ok := s.number(2, 2)
	if !ok || !s.expect(':') {
		return time.Time{}, false
	}
	minute, ok := s.number(2, 2)
	if !ok {
		return time.Time{}, false
	}
	sec := 0
	if s.expect(':') {
		if sec, ok = s.number(2, 2); !ok {
			return time.Time{}, false
		}
	}
	if !s.space() || s.i >= len(s.s) || (s.s[s.i] != '+' && s.s[s.i] != '-') {
		return time.Time{}, false
	}
	sign := 1
	if s.s[s.i] == '-' {
		sign = -1
	}
	s.i++
	zone, ok := s.number(4, 4)
	if !ok || zone/100 > 23 || zone%100 > 59 || hour > 23 || minute > 59 || sec > 59 || day < 1 ||
		day > daysIn(time.Month(month), year) {
		return time.Time{}, false
	}
	// Only a comment may follow.
	if rest := strings.Trim(s.s[s.i:], " \t\r\n"); rest != "" {
		if rest[0] != '(' || rest[len(rest)-1] != ')' || strings.ContainsAny(rest[1:len(rest)-1], "()\\") {
			return time.Time{}, false
		}
	}
	offset := sign * (zone/100*3600 + zone%100*60)
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC).Add(-time.Duration(offset) * time.Second)
	// As time.Parse: the local zone when it had that offset then, else a fixed zone.
	if _, off := t.In(time.Local).Zone(); off == offset {
		return t.In(time.Local), true
	}
	return t.In(time.FixedZone("", offset)), true
}

// dateScanner reads the tokens of a date; space, tab, CR and LF separate them.
type dateScanner struct {
	s string
	i int
}

// space skips space and reports whether there was any.
func (d *dateScanner) space() bool {
	j := d.i
	for d.i < len(d.s) && (d.s[d.i] == ' ' || d.s[d.i] == '\t' || d.s[d.i] == '\r' || d.s[d.i] == '\n') {
		d.i++
	}
	return d.i > j
}

// word reads letters.
func (d *dateScanner) word() string {
	j := d.i
	for d.i < len(d.s) && (d.s[d.i]|0x20 >= 'a' && d.s[d.i]|0x20 <= 'z') {
		d.i++
	}
	return d.s[j:d.i]
}

// number reads min to max digits, not followed by another digit.
func (d *dateScanner) number(min, max int) (int, bool) {
	n, j := 0, d.i
	for d.i < len(d.s) && d.i-j < max && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
		n = n*10 + int(d.s[d.i]-'0')
		d.i++
	}
	digits := d.i - j
	if digits < min || (d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9') {
		return 0, false
	}
	return n, true
}

// expect reads c if it comes next.
func (d *dateScanner) expect(c byte) bool {
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

// monthNumber returns 1–12 for an English month abbreviation in any case, else 0.
func monthNumber(w string) int {
	if len(w) != 3 {
		return 0
	}
	for i, m := range [...]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"} {
		if w[0]|0x20 == m[0] && w[1]|0x20 == m[1] && w[2]|0x20 == m[2] {
			return i + 1
		}
	}
	return 0
}

// dayName reports whether w is an English day-name abbreviation, in any case.
func dayName(w string) bool {
	if len(w) != 3 {
		return false
	}
	for _, d := range [...]string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
		if w[0]|0x20 == d[0] && w[1]|0x20 == d[1] && w[2]|0x20 == d[2] {
			return true
		}
	}
	return false
}

// daysIn returns the number of days of month m in year y.
func daysIn(m time.Month, y int) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
