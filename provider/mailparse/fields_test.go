package mailparse_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider/mailparse"
)

func TestParseAddressList(t *testing.T) {
	cases := []struct {
		name  string
		value string
		want  []crmsync.Address
		notes []string
	}{
		{"empty", "  ", nil, nil},
		{"valid", `Ann <ann@x.test>, "Smith, Bob" <bob@x.test>, carl@x.test`,
			[]crmsync.Address{{Name: "Ann", Email: "ann@x.test"}, {Name: "Smith, Bob", Email: "bob@x.test"}, {Email: "carl@x.test"}}, nil},
		{"encoded name", "=?UTF-8?Q?Bj=C3=B6rn?= <b@x.test>", []crmsync.Address{{Name: "Björn", Email: "b@x.test"}}, nil},
		{"encoded word inside quotes", `"=?ISO-8859-1?Q?J=F6rg?=" <j@x.test>`, []crmsync.Address{{Name: "Jörg", Email: "j@x.test"}}, nil},
		{"group", "Team: a@x.test, b@x.test;, c@x.test", []crmsync.Address{{Email: "a@x.test"}, {Email: "b@x.test"}, {Email: "c@x.test"}}, nil},
		{"empty group", "undisclosed-recipients:;", nil, nil},
		{"semicolons and empty entries", "a@x.test; ; b@x.test,,", []crmsync.Address{{Email: "a@x.test"}, {Email: "b@x.test"}}, nil},
		{"comments", "Pete(A wonderful \\) chap) <pete(his account)@silly.test(his host)>, (just a comment)",
			[]crmsync.Address{{Name: "Pete", Email: "pete@silly.test"}}, nil},
		{"unquoted name with an address", "Ann Smith ann@x.test, b@x.test",
			[]crmsync.Address{{Name: "Ann Smith", Email: "ann@x.test"}, {Email: "b@x.test"}},
			[]string{`"Ann Smith ann@x.test" is not a valid address; read as ann@x.test`}},
		{"an @ in the name: the bracketed address wins", "Mikel@Lindsaar <raasdnil@gmail.com>",
			[]crmsync.Address{{Name: "Mikel@Lindsaar", Email: "raasdnil@gmail.com"}},
			[]string{`"Mikel@Lindsaar <raasdnil@gmail.com>" is not a valid address; read as raasdnil@gmail.com`}},
		{"no address at all", `a@x.test, John Smith, "KLAUS" <>`,
			[]crmsync.Address{{Email: "a@x.test"}, {Name: "John Smith"}, {Name: "KLAUS"}},
			[]string{`"John Smith" has no address; kept as a name only`, `"\"KLAUS\" <>" has no address; kept as a name only`}},
		{"raw 8-bit name", "J\xf6rg <j@x.test>", []crmsync.Address{{Name: "Jörg", Email: "j@x.test"}}, nil},
		{"unbalanced quote", `"Ann <ann@x.test>, b@x.test`,
			[]crmsync.Address{{Name: "Ann", Email: "ann@x.test"}},
			[]string{`"\"Ann <ann@x.test>, b@x.test" is not a valid address; read as ann@x.test`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, notes := mailparse.ParseAddressList(tc.value)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.notes, notes)
		})
	}
}

func TestNormalizeMessageID(t *testing.T) {
	for in, want := range map[string]string{
		"<a.b@c>":                      "a.b@c",
		"a.b@c":                        "a.b@c",
		"  <a.b@c>  ":                  "a.b@c",
		"<a.b@c> (added by relay)":     "a.b@c",
		"(comment) <a.b@c>":            "a.b@c",
		"<no-at-sign>":                 "no-at-sign",
		"a.b@c (added by relay)":       "a.b@c",
		"<a b@c>":                      "a",
		"":                             "",
		"<>":                           "",
		"<<x@y>>":                      "x@y",
		"<1234@local.machine.example>": "1234@local.machine.example",
	} {
		assert.Equal(t, want, mailparse.NormalizeMessageID(in), "%q", in)
	}
}

func TestSplitMessageIDs(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"<a@x> <b@x>\r\n <c@x>", []string{"a@x", "b@x", "c@x"}},
		{"<a@x> (Ann's message of Monday)", []string{"a@x"}},
		{"<a@x> <broken <b@x>", []string{"a@x", "b@x"}},
		{"a@x, b@x", []string{"a@x", "b@x"}},
		{"<no-at> <a@x>", []string{"no-at", "a@x"}},
		{"just words", nil},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, mailparse.SplitMessageIDs(tc.in), "%q", tc.in)
	}
}

func TestDecodeText(t *testing.T) {
	for in, want := range map[string]string{
		"  plain  ": "plain",
		"=?ISO-8859-1?Q?Caf=E9?= =?UTF-8?B?IOKCrA==?=": "Café €",
		"=?UTF-8?Q?a?=   =?UTF-8?Q?b?=":                "ab",
		"Re: =?UTF-8?Q?caf=C3=A9?= ok":                 "Re: café ok",
		"=?NONE?B?VEVTVA=?=":                           "=?NONE?B?VEVTVA=?=",
		"=?x-unknown?Q?a?= =?UTF-8?Q?b?=":              "=?x-unknown?Q?a?= b",
		"=?iso-2022-jp?B?GyRCJF4kXyRgJGEkYhsoQg==?=":   "まみむめも",
		"caf\xe9":          "café",
		"=?UTF-8?B?/w==?=": "\uFFFD",
	} {
		assert.Equal(t, want, mailparse.DecodeText(in), "%q", in)
	}
}

func TestParseDate(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	cases := []struct {
		in   string
		want time.Time
	}{
		{"Tue, 7 May 2024 08:30:00 +0200", utc(2024, 5, 7, 6, 30, 0)},
		{"7 May 2024 08:30:00 +0200", utc(2024, 5, 7, 6, 30, 0)},
		{"Tue, 07 May 2024 08:30:00 +0000 (UTC)", utc(2024, 5, 7, 8, 30, 0)},
		{"Thu, 14 Oct 2010 20:25:16 -0700 (PDT)", utc(2010, 10, 15, 3, 25, 16)},
		{"Sun, 5 May 2024 08:00:00 GMT", utc(2024, 5, 5, 8, 0, 0)},
		{"Sun,  5 May 2024\r\n 08:00 +0000", utc(2024, 5, 5, 8, 0, 0)},
		{"Mon May  6 10:00:00 2024", utc(2024, 5, 6, 10, 0, 0)},
		{"2024-05-06T10:00:00Z", utc(2024, 5, 6, 10, 0, 0)},
		{"Monday, May 6, 2024 10:00 AM", utc(2024, 5, 6, 10, 0, 0)},
	}
	for _, tc := range cases {
		got, ok := mailparse.ParseDate(tc.in)
		if assert.True(t, ok, "%q", tc.in) {
			assert.True(t, got.Equal(tc.want), "%q: got %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "someday", "Pn, 29 paX 2007 21:13:00 +0100", "Wed, 15 Dec 2010    59:10 -0500"} {
		got, ok := mailparse.ParseDate(bad)
		assert.False(t, ok, "%q", bad)
		assert.True(t, got.IsZero())
	}
}
