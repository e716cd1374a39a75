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
	if id, ok := quickMessageID(v); ok {
		return id
	}
	return normalizeMessageID(v)
}

// normalizeMessageID is NormalizeMessageID without quickMessageID's shortcut.
func normalizeMessageID(v string) string {
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
	if l, ok := quickMessageIDs(v); ok {
		return l
	}
	return splitMessageIDs(v)
}

// splitMessageIDs is SplitMessageIDs without quickMessageIDs's shortcut.
func splitMessageIDs(v string) []string {
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

// quickMessageID reads the form nearly every message id takes, "<left@right>" in
// printable ASCII without white space, brackets or specials, and reports false for
// anything else, which NormalizeMessageID reads the slow way; what it reads, it reads
// as that would (FuzzMessageIDs holds it to that).
func quickMessageID(v string) (string, bool) {
	if len(v) < 5 || v[0] != '<' || v[len(v)-1] != '>' {
		return "", false
	}
	id := v[1 : len(v)-1]
	at := strings.IndexByte(id, '@')
	if at <= 0 || at == len(id)-1 {
		return "", false
	}
	for i := range len(id) {
		if c := id[i]; !isAtom(c) && i != at {
			return "", false
		}
	}
	return id, true
}

// quickMessageIDs reads a list of message ids that quickMessageID reads, separated by
// spaces and tabs, and reports false for anything else.
func quickMessageIDs(v string) ([]string, bool) {
	var l []string
	for {
		v = strings.TrimLeft(v, " \t")
		if v == "" {
			return l, len(l) > 0
		}
		end := strings.IndexAny(v, " \t")
		if end < 0 {
			end = len(v)
		}
		id, ok := quickMessageID(v[:end])
		if !ok {
			return nil, false
		}
		l = append(l, id)
		v = v[end:]
	}
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
