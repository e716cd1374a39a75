package pop3

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// classify turns any error of a POP3 exchange into a *crmsync.Error for operation op.
// An -ERR answer is classified by its response code, its text and its command (see
// classifyERR); everything else by provider.Classify: refused, reset and timed-out
// connections are transient, a certificate that fails verification is permanent. A
// canceled context is returned as it is. loginDelay is the server's LOGIN-DELAY, the
// wait a throttled login asks for.
func classify(op string, err error, loginDelay time.Duration) error {
	if err == nil {
		return nil
	}
	var kerr *crmsync.Error
	if errors.As(err, &kerr) {
		return err
	}
	var perr *Error
	if errors.As(err, &perr) {
		return classifyERR(op, perr, err, loginDelay)
	}
	if errors.Is(err, ErrTooLarge) {
		return provider.Permanent(op, err)
	}
	return provider.Classify(op, err)
}

// classifyERR classifies an -ERR answer:
//   - [LOGIN-DELAY], or a text that says the server limits connections or logins
//     ("too many connections", "maximum number of connections"): throttled;
//   - [IN-USE] (the maildrop is locked by another session) and [SYS/TEMP]: transient;
//   - [SYS/PERM]: permanent;
//   - [AUTH], or any -ERR to USER, PASS, AUTH or APOP: the credentials were refused;
//   - -ERR to STLS (TLS was required and the server refused it) or to UIDL (the
//     server cannot identify messages across sessions): permanent;
//   - an -ERR greeting: transient (the server turned the connection away);
//   - -ERR to TOP, RETR, DELE or LIST of one message: that message is gone;
//   - anything else: transient.
func classifyERR(op string, e *Error, err error, loginDelay time.Duration) error {
	switch {
	case e.Code == "LOGIN-DELAY":
		return provider.Throttled(op, loginDelay, err)
	case limitsConnections(e.Text):
		return provider.Throttled(op, 0, err)
	case e.Code == "IN-USE", e.Code == "SYS/TEMP":
		return provider.Transient(op, err)
	case e.Code == "SYS/PERM":
		return provider.Permanent(op, err)
	case e.Code == "AUTH":
		return provider.Auth(op, err)
	}
	switch e.Command {
	case "USER", "PASS", "AUTH", "APOP":
		return provider.Auth(op, err)
	case "STLS":
		return provider.Permanent(op, fmt.Errorf("the server refused STLS, and the profile requires TLS: %w", err))
	case "UIDL":
		return provider.Permanent(op, fmt.Errorf("the server does not support UIDL, without which POP3 messages cannot be told apart across sessions: %w", err))
	case "TOP", "RETR", "DELE", "LIST":
		return provider.NotFound(op, fmt.Errorf("%w: %w", err, crmsync.ErrNotFound))
	}
	return provider.Transient(op, err)
}

// limitsConnections reports whether a server's text says it turns connections or
// logins away for their number or rate.
func limitsConnections(text string) bool {
	t := strings.ToLower(text)
	for _, s := range []string{"too many", "maximum number of connections", "connection limit",
		"rate limit", "ratelimit", "try again later", "login delay"} {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}
