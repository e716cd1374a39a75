package mailparse

import (
	"fmt"
	netmail "net/mail"
	"regexp"
	"strings"

	"github.com/crmsync/crmsync"
)

// addressParser reads RFC 5322 addresses, display names in any charset go-message
// knows. It is never modified.
var addressParser = &netmail.AddressParser{WordDecoder: wordDecoder}

// addrSpecPattern finds what looks like an address in a part that is not valid RFC 5322.
var addrSpecPattern = regexp.MustCompile(`[^\s<>(),;:"\[\]]+@[^\s<>(),;:"\[\]]+`)

// maxAddresses bounds the addresses read from one field, against fields built to
// exhaust the parser.
const maxAddresses = 1000

// ParseAddressList reads the value of an address field (From, To, Cc, Bcc, Reply-To,
// Sender). It never fails. A valid RFC 5322 list is read as it is (the members of a
// group are listed, the group's name is not). Otherwise the value is split on commas
// and semicolons outside quotes, comments and angle brackets, and each part is read
// alone: as a valid address when it is one, comments aside; else as the address in its
// angle brackets, or the first thing in it that looks like an address ("x@y"), with the
// rest as the display name; else, when it has no address at all, as a display name
// only, with an empty Email. Each part read in one of these last ways has a note, which
// the caller puts on the email; empty parts and group names are dropped without one.
// Display names have their encoded words decoded (even inside quotes, as mail clients
// do), and raw 8-bit text that is not UTF-8 is read as Windows-1252.
func ParseAddressList(value string) (list []crmsync.Address, notes []string) {
	value = from8bit(value)
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	if l, ok := quickAddressList(value); ok {
		return l, nil
	}
	return parseAddressList(value)
}

// parseAddressList is ParseAddressList without quickAddressList's shortcut.
func parseAddressList(value string) (list []crmsync.Address, notes []string) {
	if l, err := addressParser.ParseList(value); err == nil {
		for _, a := range l[:min(len(l), maxAddresses)] {
			list = append(list, address(a))
		}
		return list, nil
	}
	for _, part := range splitAddresses(value) {
		if len(list) == maxAddresses {
			notes = append(notes, fmt.Sprintf("only the first %d addresses were read", maxAddresses))
			break
		}
		a, n, ok := parseAddress(part)
		if !ok {
			continue
		}
		list = append(list, a)
		if n != "" {
			notes = append(notes, n)
		}
	}
	return list, notes
}

// quickAddressList reads the form nearly every address field takes, without
// net/mail's allocations: addresses "local@domain", "<local@domain>" or "Display Name
// <local@domain>" separated by commas, in printable ASCII, the display name plain
// words (no quotes, comments, dots or encoded words). It reports false for anything
// else, which ParseAddressList reads the slow way; what it reads, it reads as that
// would (FuzzParseAddressList holds it to that).
func quickAddressList(v string) ([]crmsync.Address, bool) {
	var list []crmsync.Address
	for len(list) < maxAddresses {
		entry, rest, more := strings.Cut(v, ",")
		a, ok := quickAddress(strings.Trim(entry, " \t"))
		if !ok {
			return nil, false
		}
		list = append(list, a)
		if !more {
			return list, true
		}
		v = rest
	}
	return nil, false
}

// quickAddress reads one address of quickAddressList's.
func quickAddress(s string) (crmsync.Address, bool) {
	if isAddrSpec(s) {
		return crmsync.Address{Email: s}, true
	}
	lt := strings.IndexByte(s, '<')
	if lt < 0 || s[len(s)-1] != '>' || !isAddrSpec(s[lt+1:len(s)-1]) {
		return crmsync.Address{}, false
	}
	name, spaced := strings.TrimRight(s[:lt], " \t"), false
	for i := range len(name) {
		switch c := name[i]; {
		case c == ' ' || c == '\t':
			spaced = spaced || c == '\t' || (i > 0 && name[i-1] == ' ') // net/mail joins words with one space
		case !isAtom(c) || c == '.' || c == '=':
			return crmsync.Address{}, false
		}
	}
	if spaced {
		name = strings.Join(strings.Fields(name), " ")
	}
	return crmsync.Address{Name: name, Email: s[lt+1 : len(s)-1]}, true
}

// isAddrSpec reports whether s is "local@domain", both dot-atoms of printable ASCII
// (no dot at either end, no two together), as net/mail reads them.
func isAddrSpec(s string) bool {
	at := strings.IndexByte(s, '@')
	return at >= 0 && isDotAtom(s[:at]) && isDotAtom(s[at+1:])
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := range len(s) {
		if !isAtom(s[i]) {
			return false
		}
	}
	return true
}

// isAtom reports whether c is in RFC 5322's atom text in ASCII, or a dot.
func isAtom(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0
}

// address converts an address net/mail read.
func address(a *netmail.Address) crmsync.Address {
	name := a.Name
	if strings.Contains(name, "=?") {
		name = DecodeText(name) // encoded words in a quoted string
	}
	return crmsync.Address{Name: validUTF8(name), Email: validUTF8(a.Address)}
}

// parseAddress reads one part of an address list that is not valid RFC 5322; ok is
// false for a part with nothing to keep. note says how a part that is not a valid
// address was read.
func parseAddress(part string) (a crmsync.Address, note string, ok bool) {
	part = strings.TrimSpace(part)
	if part == "" {
		return a, "", false
	}
	if pa, err := addressParser.Parse(part); err == nil {
		return address(pa), "", true
	}
	bare := strings.TrimSpace(stripComments(part))
	if name, rest, isGroup := strings.Cut(bare, ":"); isGroup && !strings.ContainsAny(name, `"<@`) {
		bare = strings.TrimSpace(rest) // "Group: member", the group's list split apart
	}
	if bare == "" {
		return a, "", false // a comment or a group's name alone
	}
	if pa, err := addressParser.Parse(bare); err == nil {
		return address(pa), "", true
	}
	quoted := fmt.Sprintf("%q", truncate(part, 200))
	name, addr := bare, ""
	if i := strings.IndexByte(bare, '<'); i >= 0 {
		name = bare[:i]
		addr = addrSpecPattern.FindString(bare[i:])
	}
	if addr == "" {
		addr = addrSpecPattern.FindString(bare)
		name = strings.Replace(bare, addr, "", 1)
	}
	name = DecodeText(strings.Trim(strings.TrimSpace(name), ` "'<>`))
	if addr == "" {
		if name == "" {
			return a, "", false
		}
		return crmsync.Address{Name: name}, fmt.Sprintf("%s has no address; kept as a name only", quoted), true
	}
	addr = validUTF8(addr)
	return crmsync.Address{Name: name, Email: addr}, fmt.Sprintf("%s is not a valid address; read as %s", quoted, addr), true
}

// stripComments removes the (comments) of an address outside quoted strings.
func stripComments(s string) string {
	var b strings.Builder
	quoted, escaped, depth := false, false, 0
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
		case r == '\\' && (quoted || depth > 0):
			escaped = true
		case r == '"' && depth == 0:
			quoted = !quoted
		case r == '(' && !quoted:
			depth++
			continue
		case r == ')' && !quoted && depth > 0:
			depth--
			continue
		}
		if depth == 0 {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// splitAddresses splits an address list on commas and semicolons outside quotes,
// comments and angle brackets.
func splitAddresses(s string) []string {
	var parts []string
	var cur strings.Builder
	quoted, escaped, angle, comment := false, false, 0, 0
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
		case r == '\\' && (quoted || comment > 0):
			escaped = true
		case r == '"' && comment == 0:
			quoted = !quoted
		case quoted:
		case r == '(':
			comment++
		case r == ')' && comment > 0:
			comment--
		case comment > 0:
		case r == '<':
			angle++
		case r == '>' && angle > 0:
			angle--
		case (r == ',' || r == ';') && angle == 0:
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteRune(r)
	}
	return append(parts, cur.String())
}

// truncate cuts s to at most n bytes, for notes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
