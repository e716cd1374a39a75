package filter

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
)

func TestTokenConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  TokenConfig
		bad  string // substring of the error; "" for valid
	}{
		{"zero value is the default", TokenConfig{}, ""},
		{"dynamics prefix with colon", TokenConfig{Prefix: "CRM:"}, ""},
		{"20 characters", TokenConfig{Prefix: strings.Repeat("é", 20)}, ""},
		{"21 characters", TokenConfig{Prefix: strings.Repeat("x", 21)}, "Prefix"},
		{"control character", TokenConfig{Prefix: "C\nRM"}, "control"},
		{"surrounding space", TokenConfig{Prefix: " CRM"}, "space"},
		{"largest base", TokenConfig{BaseNumber: MaxTokenBaseNumber}, ""},
		{"base too large", TokenConfig{BaseNumber: MaxTokenBaseNumber + 1}, "BaseNumber"},
		{"negative base", TokenConfig{BaseNumber: -1}, "BaseNumber"},
		{"10 user digits", TokenConfig{UserDigits: 10}, ""},
		{"11 user digits", TokenConfig{UserDigits: 11}, "UserDigits"},
		{"negative user digits", TokenConfig{UserDigits: -1}, "UserDigits"},
		{"9 counter digits", TokenConfig{CounterDigits: 9}, ""},
		{"10 counter digits", TokenConfig{CounterDigits: 10}, "CounterDigits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.bad == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.bad)
			var ve *crmsync.ValidationError
			assert.True(t, errors.As(err, &ve))
		})
	}
}

func TestTokenFormatParse(t *testing.T) {
	tests := []struct {
		name          string
		cfg           TokenConfig
		user, counter int64
		want          string
	}{
		{"defaults, like Dynamics", TokenConfig{}, 1, 323, "CRM:0001323"},
		{"dynamics prefix", TokenConfig{Prefix: "CRM:"}, 1, 323, "CRM:0001323"},
		{"base number", TokenConfig{BaseNumber: 42}, 7, 5, "CRM:042007005"},
		{"wide", TokenConfig{Prefix: "Ref", UserDigits: 5, CounterDigits: 6}, 12, 34, "Ref:000012000034"},
		{"counter wraps", TokenConfig{}, 1, 1000, "CRM:0001000"},
		{"user reduced", TokenConfig{UserDigits: 1}, 12, 3, "CRM:02003"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cfg.Format(tt.user, tt.counter)
			assert.Equal(t, tt.want, got)
			tok, err := tt.cfg.Parse(got)
			require.NoError(t, err)
			c := tt.cfg.WithDefaults()
			assert.Equal(t, Token{User: tt.user % pow10(c.UserDigits), Counter: tt.counter % pow10(c.CounterDigits)}, tok)
		})
	}
}

func TestTokenParseRejects(t *testing.T) {
	cfg := TokenConfig{BaseNumber: 9}
	for _, s := range []string{"", "CRM", "CRM:", "XRM:09001001", "CRM:9001001", "CRM:08001001", "CRM:0900100", "CRM:090010011", "CRM:09001a01"} {
		_, err := cfg.Parse(s)
		assert.Error(t, err, s)
	}
	tok, err := cfg.Parse("crm:09001001")
	require.NoError(t, err)
	assert.Equal(t, Token{User: 1, Counter: 1}, tok)
}

func TestTokenFind(t *testing.T) {
	cfg := TokenConfig{}
	tests := []struct {
		name, subject, want string
	}{
		{"plain", "Quote for 20 chairs CRM:0001323", "CRM:0001323"},
		{"behind RE", "RE: Quote for 20 chairs CRM:0001323", "CRM:0001323"},
		{"behind AW and WG", "AW: WG: Angebot CRM:0001323", "CRM:0001323"},
		{"behind Fwd", "Fwd: hello CRM:0001323", "CRM:0001323"},
		{"lower-case prefix", "re: hello crm:0001323", "CRM:0001323"},
		{"in the middle", "hello CRM:0001323 (was: hi)", "CRM:0001323"},
		{"bracketed", "[CRM:0001323] hello", "CRM:0001323"},
		{"last of two", "RE: a CRM:0001000 b CRM:0002000", "CRM:0002000"},
		{"encoded word, UTF-8 B", "=?UTF-8?B?UkU6IFF1b3RlIENSTTowMDAxMzIz?=", "CRM:0001323"},
		{"encoded word, Q, latin1", "=?iso-8859-1?Q?AW:_Gr=FC=DFe_CRM:0001323?=", "CRM:0001323"},
		{"encoded word, unknown charset", "=?windows-1252?Q?RE:_caf=E9_CRM:0001323?=", "CRM:0001323"},
		{"split over encoded words", "=?UTF-8?Q?RE:_hello_CRM:00?= =?UTF-8?Q?01323?=", "CRM:0001323"},
		{"glued to a word before", "XCRM:0001323", ""},
		{"glued to a letter after", "CRM:0001323abc", ""},
		{"no digits", "CRM: hello", ""},
		{"other prefix", "REF:0001323", ""},
		{"empty", "", ""},
		{"at the very end without digits", "hello CRM:", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cfg.Find(tt.subject)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.want != "", ok)
		})
	}
}

func TestTokenFindOtherPrefixes(t *testing.T) {
	got, ok := TokenConfig{Prefix: "EMAIL ID#"}.Find("RE: order EMAIL ID#:0001001")
	assert.True(t, ok)
	assert.Equal(t, "EMAIL ID#:0001001", got)
	got, ok = TokenConfig{Prefix: "#"}.Find("RE: order#:0001001")
	assert.True(t, ok, "a prefix starting with punctuation needs no boundary")
	assert.Equal(t, "#:0001001", got)
}

func TestTokenStamp(t *testing.T) {
	cfg := TokenConfig{}
	tok := "CRM:0001323"
	tests := []struct {
		name, subject, want string
	}{
		{"appends", "Quote", "Quote CRM:0001323"},
		{"empty subject", "", "CRM:0001323"},
		{"trailing space", "Quote  ", "Quote CRM:0001323"},
		{"replaces an old token", "RE: Quote CRM:0001000", "RE: Quote CRM:0001323"},
		{"idempotent", "Quote CRM:0001323", "Quote CRM:0001323"},
		{"leading space kept", " 0", " 0 CRM:0001323"},
		{"leading space kept when replacing", " 0 CRM:0001000", " 0 CRM:0001323"},
		{"token in the middle", "a CRM:0001000  b", "a b CRM:0001323"},
		{"token first", "CRM:0001000 b", "b CRM:0001323"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, cfg.Stamp(tt.subject, tok))
		})
	}
}

func TestTokenStampCutsTo255Characters(t *testing.T) {
	cfg := TokenConfig{}
	tok := "CRM:0001323"
	for _, unit := range []string{"a", "é", "日本", "😀", "a😀"} {
		for n := 240; n < 270; n++ {
			subject := strings.Repeat(unit, n)
			got := cfg.Stamp(subject, tok)
			require.True(t, utf8.ValidString(got), "unit %q n %d", unit, n)
			assert.LessOrEqual(t, utf8.RuneCountInString(got), MaxSubjectLen)
			assert.True(t, strings.HasSuffix(got, " "+tok))
			found, ok := cfg.Find(got)
			assert.True(t, ok)
			assert.Equal(t, tok, found)
			if utf8.RuneCountInString(subject)+1+len(tok) <= MaxSubjectLen {
				assert.Equal(t, subject+" "+tok, got)
			} else {
				assert.Equal(t, MaxSubjectLen, utf8.RuneCountInString(got))
			}
		}
	}
}

func TestTokenGen(t *testing.T) {
	g, err := NewTokenGen(TokenConfig{CounterDigits: 1}, 7)
	require.NoError(t, err)
	var got []string
	for range 12 {
		got = append(got, g.Next())
	}
	assert.Equal(t, "CRM:00070", got[0])
	assert.Equal(t, "CRM:00079", got[9])
	assert.Equal(t, "CRM:00070", got[10], "the counter wraps")
	assert.Equal(t, int64(2), g.Counter())
	g.SetCounter(-1)
	assert.Equal(t, "CRM:00079", g.Next())

	_, err = NewTokenGen(TokenConfig{}, 1000)
	assert.Error(t, err, "user number wider than 3 digits")
	_, err = NewTokenGen(TokenConfig{Prefix: strings.Repeat("x", 30)}, 1)
	assert.Error(t, err)
}

func TestTokenGenConcurrent(t *testing.T) {
	g, err := NewTokenGen(TokenConfig{CounterDigits: 4}, 1)
	require.NoError(t, err)
	var mu sync.Mutex
	seen := make(map[string]bool)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				tok := g.Next()
				mu.Lock()
				seen[tok] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Len(t, seen, 8000, "no token issued twice before the counter wraps")
}
