package filter

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/crmsync/crmsync"
)

func TestNormalizeSubject(t *testing.T) {
	n := NewSubjectNormalizer(nil, TokenConfig{})
	tests := []struct{ in, want string }{
		{"Hello", "hello"},
		{"RE: Hello", "hello"},
		{"Re: RE: re:Hello", "hello"},
		{"FW: Fwd: hello", "hello"},
		{"AW: WG: Angebot", "angebot"},
		{"SV: VS: Tilbud", "tilbud"},
		{"TR: RE: devis", "devis"},
		{"Antw: RIF: ODP: hallo", "hallo"},
		{"Re[2]: Re(3): hello", "hello"},
		{"RE : hello", "hello"},
		{"回复：hello", "回复：hello"},
		{"RE： hello", "hello"},
		{"[EXTERNAL] RE: hello", "hello"},
		{"RE: [External] hello", "hello"},
		{"[CAUTION: external sender] hello", "hello"},
		{"[Case 123] hello", "[case 123] hello"},
		{"Hello CRM:0001323", "hello"},
		{"RE: Hello   world\t CRM:0001323", "hello world"},
		{"=?UTF-8?Q?RE:_Gr=C3=BC=C3=9Fe?=", "grüße"},
		{"Regarding the offer", "regarding the offer"},
		{"Reply", "reply"},
		{"RE:", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := n.Normalize(tt.in)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, got, n.Normalize(got), "idempotent")
		})
	}
}

func TestNormalizeSubjectCustomPattern(t *testing.T) {
	n := NewSubjectNormalizer(regexp.MustCompile(`(?i)^(?:re|odpověď):\s*`), TokenConfig{})
	assert.Equal(t, "fw: hello", n.Normalize("Re: FW: hello"))
	assert.Equal(t, "hello", n.Normalize("Odpověď: hello"))
	// A pattern that can match empty, or not at the start, stops instead of looping.
	n = NewSubjectNormalizer(regexp.MustCompile(`x*`), TokenConfig{})
	assert.Equal(t, "hello", n.Normalize("hello"))
	n = NewSubjectNormalizer(regexp.MustCompile(`l`), TokenConfig{})
	assert.Equal(t, "hello", n.Normalize("hello"))
}

func TestSubjectHash(t *testing.T) {
	n := NewSubjectNormalizer(nil, TokenConfig{})
	assert.Equal(t, n.SubjectHash("Offer for 20 chairs"), n.SubjectHash("RE: AW: offer for 20  chairs CRM:0001000"))
	assert.NotEqual(t, n.SubjectHash("Offer for 20 chairs"), n.SubjectHash("Offer for 21 chairs"))
	assert.Len(t, n.SubjectHash("x"), 16)
	assert.Equal(t, "", n.SubjectHash("RE: "))
}

func TestRecipientHashes(t *testing.T) {
	e := &crmsync.Email{
		From: crmsync.Address{Email: "Ann@Example.com"},
		To:   []crmsync.Address{{Email: "ann@example.com"}, {Email: "bob@example.com"}, {Email: ""}},
		Cc:   []crmsync.Address{{Email: "carl@example.com"}},
		Bcc:  []crmsync.Address{{Email: "dora@example.com"}},
	}
	hs := RecipientHashes(e, 20)
	assert.Len(t, hs, 3, "deduplicated, case-insensitive, Bcc not included")
	assert.Equal(t, hash64("ann@example.com"), hs[0])
	assert.Len(t, RecipientHashes(e, 2), 2)

	many := &crmsync.Email{}
	for i := range 30 {
		many.To = append(many.To, crmsync.Address{Email: string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@x.org"})
	}
	assert.Len(t, RecipientHashes(many, DefaultMaxRecipientHashes), 20)
}
