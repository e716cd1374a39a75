package filter

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/crmsync/crmsync"
)

// Tracking token defaults and limits, as the product documents them.
const (
	DefaultTokenPrefix        = "CRM"
	DefaultTokenUserDigits    = 3
	DefaultTokenCounterDigits = 3
	MaxTokenPrefixLen         = 20
	MaxTokenBaseNumber        = 2147483647
	MaxTokenUserDigits        = 10
	MaxTokenCounterDigits     = 9
	// MaxSubjectLen is the longest subject, in characters, that Stamp produces.
	MaxSubjectLen = 255
)

// TokenConfig is the organization's tracking-token format. A token is
//
//	Prefix ":" "0" [BaseNumber] User Counter
//
// for example "CRM:0001323" with the defaults: the prefix, a colon, the digit 0, the base
// number in decimal when it is not zero (no padding), the user number padded to
// UserDigits and the message counter padded to CounterDigits.
//
// This is Dynamics 365's format: its default token is the four characters "CRM:" and
// seven digits, the first being the "online" designator (0 for a server-side token; the
// Outlook client's offline tokens used 1), then three digits of user number and three of
// counter. Dynamics documents the deployment base number only as an identifier of a
// deployment; crmsync writes it between the designator and the user number, so two
// deployments with different base numbers never issue the same token, and leaves it out
// when it is zero, so the default tokens are exactly Dynamics's.
//
// Dynamics stores its prefix with the colon ("CRM:"); a Prefix ending in ':' is accepted
// and the colon dropped, so an imported setting yields the same tokens. The zero value is
// the default configuration.
type TokenConfig struct {
	// Prefix is 1–20 characters, without control characters or surrounding spaces.
	// Default "CRM".
	Prefix string
	// BaseNumber identifies the deployment: 0–2,147,483,647, default 0.
	BaseNumber int
	// UserDigits is the number of digits of the user number: 1–10, default 3.
	UserDigits int
	// CounterDigits is the number of digits of the message counter: 1–9, default 3.
	// The counter wraps to 0 after its largest value.
	CounterDigits int
}

// WithDefaults returns c with zero fields set to their defaults and a trailing ':' of
// the prefix dropped.
func (c TokenConfig) WithDefaults() TokenConfig {
	c.Prefix = strings.TrimSuffix(c.Prefix, ":")
	if c.Prefix == "" {
		c.Prefix = DefaultTokenPrefix
	}
	if c.UserDigits == 0 {
		c.UserDigits = DefaultTokenUserDigits
	}
	if c.CounterDigits == 0 {
		c.CounterDigits = DefaultTokenCounterDigits
	}
	return c
}

// Validate checks c (after WithDefaults). The error is a *crmsync.ValidationError
// naming every bad field.
func (c TokenConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if n := utf8.RuneCountInString(c.Prefix); n > MaxTokenPrefixLen {
		errs = append(errs, fmt.Errorf("Prefix %q has %d characters, more than %d", c.Prefix, n, MaxTokenPrefixLen))
	}
	if !utf8.ValidString(c.Prefix) || strings.IndexFunc(c.Prefix, unicode.IsControl) >= 0 {
		errs = append(errs, fmt.Errorf("Prefix %q has control characters or invalid UTF-8", c.Prefix))
	}
	if strings.TrimSpace(c.Prefix) != c.Prefix {
		errs = append(errs, fmt.Errorf("Prefix %q starts or ends with a space", c.Prefix))
	}
	if c.BaseNumber < 0 || c.BaseNumber > MaxTokenBaseNumber {
		errs = append(errs, fmt.Errorf("BaseNumber %d is outside 0–%d", c.BaseNumber, MaxTokenBaseNumber))
	}
	if c.UserDigits < 1 || c.UserDigits > MaxTokenUserDigits {
		errs = append(errs, fmt.Errorf("UserDigits %d is outside 1–%d", c.UserDigits, MaxTokenUserDigits))
	}
	if c.CounterDigits < 1 || c.CounterDigits > MaxTokenCounterDigits {
		errs = append(errs, fmt.Errorf("CounterDigits %d is outside 1–%d", c.CounterDigits, MaxTokenCounterDigits))
	}
	if len(errs) > 0 {
		return &crmsync.ValidationError{What: "tracking token config", Err: errors.Join(errs...)}
	}
	return nil
}

// Token is a parsed tracking token.
type Token struct {
	User    int64
	Counter int64
}

// Format returns the token for this user number and counter, each reduced modulo its
// digit range (so a counter that has run past its range wraps).
func (c TokenConfig) Format(user, counter int64) string {
	c = c.WithDefaults()
	user = mod(user, pow10(c.UserDigits))
	counter = mod(counter, pow10(c.CounterDigits))
	var b strings.Builder
	b.Grow(len(c.Prefix) + 2 + 10 + c.UserDigits + c.CounterDigits)
	b.WriteString(c.Prefix)
	b.WriteString(":0")
	if c.BaseNumber != 0 {
		b.WriteString(strconv.Itoa(c.BaseNumber))
	}
	writePadded(&b, user, c.UserDigits)
	writePadded(&b, counter, c.CounterDigits)
	return b.String()
}

// Parse parses a token of this configuration, such as "CRM:0001323". The prefix is
// compared case-insensitively.
func (c TokenConfig) Parse(s string) (Token, error) {
	c = c.WithDefaults()
	bad := func(why string) (Token, error) {
		return Token{}, fmt.Errorf("filter: %q is not a tracking token: %s", s, why)
	}
	if len(s) < len(c.Prefix)+1 || !strings.EqualFold(s[:len(c.Prefix)], c.Prefix) || s[len(c.Prefix)] != ':' {
		return bad("no " + c.Prefix + ": prefix")
	}
	digits := s[len(c.Prefix)+1:]
	base := ""
	if c.BaseNumber != 0 {
		base = strconv.Itoa(c.BaseNumber)
	}
	if len(digits) != 1+len(base)+c.UserDigits+c.CounterDigits || !allDigits(digits) {
		return bad(fmt.Sprintf("want %d digits", 1+len(base)+c.UserDigits+c.CounterDigits))
	}
	if digits[0] != '0' {
		return bad("designator is not 0")
	}
	if digits[1:1+len(base)] != base {
		return bad("another deployment's base number")
	}
	rest := digits[1+len(base):]
	user, _ := strconv.ParseInt(rest[:c.UserDigits], 10, 64)
	counter, _ := strconv.ParseInt(rest[c.UserDigits:], 10, 64)
	return Token{User: user, Counter: counter}, nil
}

// Find returns the last tracking token with this configuration's prefix in subject,
// in canonical form (the prefix as configured, a colon and the digits), and whether
// there was one. The subject may be raw: RFC 2047 encoded words are decoded first, with
// any charset (a token is ASCII). The token may stand anywhere, typically at the end
// behind "RE:", "AW:", "Fwd:" or "WG:"; it must not be glued to a letter or digit on
// either side. Find does not check the digit count, so tokens issued under an earlier
// digit configuration are still found.
func (c TokenConfig) Find(subject string) (string, bool) {
	c = c.WithDefaults()
	subject = decodeSubject(subject)
	var found string
	eachToken(subject, c.Prefix, func(start, end int) {
		found = c.Prefix + subject[start+len(c.Prefix):end]
	})
	return found, found != ""
}

// Stamp returns subject with token appended after a space, first removing any token
// of this prefix already in it (a CRM reply carries only its own token). When the
// result would be longer than 255 characters the subject is cut, on a character
// boundary, so that subject, space and token fit.
func (c TokenConfig) Stamp(subject, token string) string {
	c = c.WithDefaults()
	subject = c.strip(subject)
	room := MaxSubjectLen - 1 - utf8.RuneCountInString(token)
	if room <= 0 {
		return token
	}
	if utf8.RuneCountInString(subject) > room {
		n := 0
		for i := range subject {
			if n == room {
				subject = subject[:i]
				break
			}
			n++
		}
		// The cut may have made a token of what was not one ("CRM:0A0" cut to "CRM:0").
		subject = c.strip(subject)
	}
	// Trimmed after the cut, which may leave only white space: then the token alone.
	subject = strings.TrimRightFunc(subject, unicode.IsSpace)
	if subject == "" {
		return token
	}
	return subject + " " + token
}

// strip removes every token of c's prefix from s, with the white space around it,
// leaving one space where text was on both sides.
func (c TokenConfig) strip(s string) string {
	var b strings.Builder
	last := 0
	eachToken(s, c.Prefix, func(start, end int) {
		b.WriteString(strings.TrimRightFunc(s[last:start], unicode.IsSpace))
		last = end
		for last < len(s) && (s[last] == ' ' || s[last] == '\t') {
			last++
		}
		if b.Len() > 0 && last < len(s) {
			b.WriteByte(' ')
		}
	})
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// eachToken calls fn with the byte span of every token (prefix, ':' and digits) in s.
func eachToken(s, prefix string, fn func(start, end int)) {
	if prefix == "" {
		return
	}
	first := prefix[0]
	asciiFirst := first < utf8.RuneSelf
	boundary := startsWithWordChar(prefix)
	for i := 0; i+len(prefix) < len(s); i++ {
		if asciiFirst && lowerASCII(s[i]) != lowerASCII(first) {
			continue
		}
		if !strings.EqualFold(s[i:i+len(prefix)], prefix) {
			continue
		}
		j := i + len(prefix)
		if s[j] != ':' || j+1 >= len(s) || !isDigit(s[j+1]) {
			continue
		}
		if boundary && i > 0 {
			if r, _ := utf8.DecodeLastRuneInString(s[:i]); isWordRune(r) {
				continue
			}
		}
		k := j + 1
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		if k < len(s) {
			if r, _ := utf8.DecodeRuneInString(s[k:]); isWordRune(r) {
				continue
			}
		}
		fn(i, k)
		i = k - 1
	}
}

// decodeSubject decodes RFC 2047 encoded words. Unknown charsets pass their bytes
// through (tokens are ASCII); a subject that does not decode is searched as it is.
func decodeSubject(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d := wordDecoderPool.Get().(*mime.WordDecoder)
	defer wordDecoderPool.Put(d)
	if out, err := d.DecodeHeader(s); err == nil {
		return out
	}
	return s
}

var wordDecoderPool = sync.Pool{New: func() any {
	return &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil }}
}}

// TokenGen issues the tracking tokens of one CRM user: the user number is fixed and the
// counter increases with every token, wrapping to 0 after its largest value. It is safe
// for concurrent use. Persisting the counter across restarts is the host's business
// (see Counter and SetCounter); reuse after a wrap is expected and harmless for threads
// that have gone quiet.
type TokenGen struct {
	cfg  TokenConfig
	user int64
	max  int64

	mu      sync.Mutex
	counter int64
}

// NewTokenGen returns a generator for userNumber, which must fit cfg's user digits.
func NewTokenGen(cfg TokenConfig, userNumber int64) (*TokenGen, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if userNumber < 0 || userNumber >= pow10(cfg.UserDigits) {
		return nil, &crmsync.ValidationError{What: "token generator",
			Err: fmt.Errorf("user number %d does not fit %d digits", userNumber, cfg.UserDigits)}
	}
	return &TokenGen{cfg: cfg, user: userNumber, max: pow10(cfg.CounterDigits)}, nil
}

// Next returns the next token.
func (g *TokenGen) Next() string {
	g.mu.Lock()
	n := g.counter
	g.counter = (g.counter + 1) % g.max
	g.mu.Unlock()
	return g.cfg.Format(g.user, n)
}

// Counter returns the counter the next token will carry.
func (g *TokenGen) Counter() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.counter
}

// SetCounter sets the counter the next token will carry, reduced modulo its range.
func (g *TokenGen) SetCounter(n int64) {
	g.mu.Lock()
	g.counter = mod(n, g.max)
	g.mu.Unlock()
}

func pow10(n int) int64 {
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}

func mod(a, m int64) int64 {
	a %= m
	if a < 0 {
		a += m
	}
	return a
}

func writePadded(b *strings.Builder, n int64, width int) {
	s := strconv.FormatInt(n, 10)
	for i := len(s); i < width; i++ {
		b.WriteByte('0')
	}
	b.WriteString(s)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

func lowerASCII(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' }

func startsWithWordChar(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isWordRune(r)
}
