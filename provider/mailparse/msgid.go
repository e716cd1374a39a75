package mailparse

import (
	"regexp"
	"strings"
	"unicode"

	"github.com/emersion/go-message/mail"
)

// msgIDPattern finds "<id>" in a sloppy field.
var msgIDPattern = regexp.MustCompile(`<([^<>\s]+)>`)

// NormalizeMessageID returns the message id of a Message-ID value, or of an id given
// with or without its angle brackets, without the brackets: "<a.b@c> (added by relay)"
// and "a.b@c" are both "a.b@c". A value that is not valid RFC 5322 gives its first
// bracketed id, else its first word. The result never contains white space or angle
// brackets; it is "" for a value without an id.
func NormalizeMessageID(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	var h mail.Header
	h.Set("Message-Id", v)
	if id, err := h.MessageID(); err == nil && id != "" {
		return cleanID(id)
	}
	if m := msgIDPattern.FindStringSubmatch(v); m != nil {
		return cleanID(m[1])
	}
	if f := strings.Fields(strings.Trim(v, "<>")); len(f) > 0 {
		return cleanID(f[0])
	}
	return ""
}

// SplitMessageIDs returns the message ids of an In-Reply-To or References value, in
// order and without angle brackets. A value that is not valid RFC 5322 gives its
// bracketed ids, or, when it has none, its words that look like ids (they contain an
// "@").
func SplitMessageIDs(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var h mail.Header
	h.Set("References", v)
	if l, err := h.MsgIDList("References"); err == nil {
		return cleanIDs(l)
	}
	var l []string
	for _, m := range msgIDPattern.FindAllStringSubmatch(v, -1) {
		l = append(l, m[1])
	}
	if len(l) == 0 {
		for _, w := range strings.FieldsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || r == ',' }) {
			if strings.Contains(w, "@") {
				l = append(l, w)
			}
		}
	}
	return cleanIDs(l)
}

// cleanID drops what an id cannot contain: angle brackets and white space.
func cleanID(id string) string {
	return validUTF8(strings.Map(func(r rune) rune {
		if r == '<' || r == '>' || unicode.IsSpace(r) {
			return -1
		}
		return r
	}, id))
}

func cleanIDs(l []string) []string {
	out := l[:0]
	for _, id := range l {
		if id = cleanID(id); id != "" {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
