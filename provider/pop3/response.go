package pop3

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Error is a server's -ERR answer. It leaves the session usable (but for an -ERR
// greeting, which ends it).
type Error struct {
	// Command is the command's verb, such as "PASS" or "RETR"; "" for the greeting.
	// Arguments are never kept, so that an error never holds a password.
	Command string
	// Code is the extended response code (RFC 2449, RFC 3206) in upper case, without
	// brackets: "AUTH", "IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM"; "" when the
	// answer has none.
	Code string
	// Text is the rest of the answer, after the code.
	Text string
}

// Error returns "pop3 VERB: -ERR [CODE] text".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("pop3 ")
	if e.Command == "" {
		b.WriteString("greeting")
	} else {
		b.WriteString(e.Command)
	}
	b.WriteString(": -ERR")
	if e.Code != "" {
		b.WriteString(" [" + e.Code + "]")
	}
	if e.Text != "" {
		b.WriteString(" " + e.Text)
	}
	return b.String()
}

// parseStatus reads a status line: the text after "+OK", or an *Error for "-ERR".
func parseStatus(verb, line string) (string, error) {
	switch {
	case hasPrefixFold(line, "+OK"):
		rest := line[3:]
		if rest != "" && rest[0] != ' ' {
			break
		}
		return strings.TrimPrefix(rest, " "), nil
	case hasPrefixFold(line, "-ERR"):
		rest := line[4:]
		if rest != "" && rest[0] != ' ' {
			break
		}
		code, text := responseCode(strings.TrimPrefix(rest, " "))
		return "", &Error{Command: verb, Code: code, Text: text}
	}
	if len(line) > 80 {
		line = line[:80] + "…"
	}
	what := "the greeting"
	if verb != "" {
		what = "the answer to " + verb
	}
	return "", fmt.Errorf("%w: %s is %q, neither +OK nor -ERR", ErrProtocol, what, line)
}

// responseCode splits "[CODE] text" into the upper-cased code and the text.
func responseCode(s string) (code, text string) {
	if !strings.HasPrefix(s, "[") {
		return "", s
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return "", s
	}
	return strings.ToUpper(strings.TrimSpace(s[1:end])), strings.TrimSpace(s[end+1:])
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// Capabilities are a server's CAPA answer (RFC 2449): each capability's name in upper
// case, with its arguments ("SASL" → ["PLAIN", "LOGIN"]).
type Capabilities map[string][]string

// Has reports whether the server offers capability name (any case).
func (c Capabilities) Has(name string) bool {
	_, ok := c[strings.ToUpper(name)]
	return ok
}

// SASL reports whether the server offers SASL mechanism mech (any case).
func (c Capabilities) SASL(mech string) bool {
	for _, m := range c["SASL"] {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

// LoginDelay returns the LOGIN-DELAY capability's wait between logins, or 0.
func (c Capabilities) LoginDelay() time.Duration {
	args := c["LOGIN-DELAY"]
	if len(args) == 0 {
		return 0
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

func parseCapabilities(lines []string) Capabilities {
	caps := make(Capabilities, len(lines))
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		caps[strings.ToUpper(f[0])] = f[1:]
	}
	return caps
}
