package filter

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"regexp"
	"strings"

	"github.com/crmsync/crmsync"
)

// DefaultSubjectPrefixes matches one reply or forward prefix, or one "[EXTERNAL]"-style
// tag that mail gateways add, at the start of a subject; the normalizer strips matches
// until none is left. It covers RE, FW, FWD (English), AW, WG (German), SV, VS (Nordic),
// TR (French), ANTW (Dutch), RIF (Italian), ODP (Polish), RES, ENC (Portuguese),
// VL (Finnish), with an optional count ("Re[2]:", "RE(3):") and an ASCII or full-width
// colon; and bracketed EXTERNAL, EXT, CAUTION, WARNING, SUSPICIOUS and SPAM tags. Other
// bracketed tags ("[Case 123]") are kept: they often tell threads apart.
var DefaultSubjectPrefixes = regexp.MustCompile(
	`(?i)^(?:(?:re|fwd?|aw|wg|sv|vs|tr|antw|rif|odp|res|enc|vl)\s*(?:\[\d+\]|\(\d+\))?\s*(?::|：)|\[\s*(?:external|ext|caution|warning|suspicious|spam)\b[^\]]*\])\s*`)

// SubjectNormalizer turns a subject into the form smart matching hashes: encoded words
// decoded, tracking tokens removed, white space collapsed, lower-cased, and reply and
// forward prefixes stripped. The zero value is not usable; see NewSubjectNormalizer.
type SubjectNormalizer struct {
	prefixes *regexp.Regexp
	token    TokenConfig
}

// NewSubjectNormalizer returns a normalizer stripping prefixes that match re (nil:
// DefaultSubjectPrefixes) and tracking tokens of token's prefix. re should be anchored
// with ^; a match that is not at the start, or is empty, ends the stripping.
func NewSubjectNormalizer(re *regexp.Regexp, token TokenConfig) *SubjectNormalizer {
	if re == nil {
		re = DefaultSubjectPrefixes
	}
	return &SubjectNormalizer{prefixes: re, token: token.WithDefaults()}
}

// Normalize returns the normalized subject. It is idempotent for subjects without
// encoded words.
func (n *SubjectNormalizer) Normalize(subject string) string {
	s := decodeSubject(subject)
	s = n.token.strip(s)
	s = strings.ToLower(strings.Join(strings.Fields(s), " "))
	for {
		loc := n.prefixes.FindStringIndex(s)
		if loc == nil || loc[0] != 0 || loc[1] == 0 {
			break
		}
		s = s[loc[1]:]
	}
	return strings.TrimSpace(s)
}

// SubjectHash returns the smart-matching hash of a subject: 16 hex digits of the
// 64-bit FNV-1a of its normalized form, or "" when nothing is left after
// normalization (such subjects never match).
func (n *SubjectNormalizer) SubjectHash(subject string) string {
	s := n.Normalize(subject)
	if s == "" {
		return ""
	}
	return hash64(s)
}

// RecipientHashes returns the smart-matching hashes of e's sender, To and Cc
// addresses, lower-cased, without duplicates, in that order, at most max of them.
func RecipientHashes(e *crmsync.Email, max int) []string {
	out := make([]string, 0, min(max, 1+len(e.To)+len(e.Cc)))
	add := func(a crmsync.Address) {
		if len(out) >= max {
			return
		}
		addr := normAddr(a.Email)
		if addr == "" {
			return
		}
		h := hash64(addr)
		for _, x := range out {
			if x == h {
				return
			}
		}
		out = append(out, h)
	}
	add(e.From)
	for _, a := range e.To {
		add(a)
	}
	for _, a := range e.Cc {
		add(a)
	}
	return out
}

func hash64(s string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h.Sum64())
	return hex.EncodeToString(b[:])
}

// normAddr is the form addresses are compared in: trimmed and lower-cased.
func normAddr(s string) string {
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || ('A' <= c && c <= 'Z') {
			return strings.ToLower(s)
		}
	}
	return s
}
