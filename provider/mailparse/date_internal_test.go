package mailparse

import "testing"

// FuzzParseDate checks ParseDate's fast path against the slow one it stands in for:
// whatever parseUsualDate reads, net/mail and the fallback layouts read as the same
// instant in the same offset.
func FuzzParseDate(f *testing.F) {
	for _, s := range []string{
		"Tue, 7 May 2024 08:30:00 +0200", "7 May 2024 08:30:00 +0200", "Tue, 07 May 2024 08:30:00 +0000 (UTC)",
		"Thu, 14 Oct 2010 20:25:16 -0700 (PDT)", "Sun, 5 May 2024 08:00:00 GMT", "Sun,  5 May 2024\r\n 08:00 +0000",
		"Mon May  6 10:00:00 2024", "2024-05-06T10:00:00Z", "Wed, 31 Feb 2024 10:00:00 +0100", " Wed, 25 Nov 2026 08:13:29 +0000",
		"mon, 1 jan 2024 00:00 -2359", "Fri, 29 Feb 2023 12:00:00 +0000", "Sat, 1 Jan 2000 23:59:59 +0000(c)",
		"1 OCt 0000 00:00 +0000(\\)", // a quoted pair in the comment: net/mail reads it as unterminated
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := parseUsualDate(s)
		if !ok {
			return
		}
		slow, ok := parseDateSlow(s)
		if !ok {
			t.Fatalf("%q: the fast path reads %v, the slow path nothing", s, fast)
		}
		_, fo := fast.Zone()
		_, so := slow.Zone()
		if !fast.Equal(slow) || fo != so || fast.Location().String() != slow.Location().String() {
			t.Fatalf("%q: fast %v (%v), slow %v (%v)", s, fast, fast.Location(), slow, slow.Location())
		}
	})
}
