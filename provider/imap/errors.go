package imap

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// logoutWait bounds the wait for the server's answer to LOGOUT or QUIT.
const logoutWait = 5 * time.Second

// dialError classifies a failure to connect (or to finish TLS) to addr: refused, reset
// and timed-out connections are transient, certificates that fail verification and
// unknown hosts permanent (see provider.Classify).
func (c *Conn) dialError(op, addr string, err error) error {
	return provider.Classify(op, fmt.Errorf("%s: %w", addr, err))
}

// greetingError classifies a failure to read the IMAP greeting: a BYE (the server
// refusing the connection, often for too many connections) or a broken connection.
func (c *Conn) greetingError(addr string, err error) error {
	var ierr *imap.Error
	if errors.As(err, &ierr) && tooMany(ierr.Text) {
		return provider.Throttled("imap connect", 0, fmt.Errorf("%s: %w", addr, err))
	}
	if errors.As(err, &ierr) {
		return provider.Transient("imap connect", fmt.Errorf("%s: %w", addr, err))
	}
	return c.dialError("imap connect", addr, err)
}

// loginError classifies a refused LOGIN: credentials refused are auth errors, a server
// that is temporarily unable or limits connections is transient or throttled.
func (c *Conn) loginError(err error) error {
	var ierr *imap.Error
	if !errors.As(err, &ierr) {
		return provider.Classify("imap login", err)
	}
	err = fmt.Errorf("%s: %w", c.whoOr("login"), err)
	switch {
	case ierr.Code == imap.ResponseCodeLimit, tooMany(ierr.Text):
		// Before UNAVAILABLE: "[UNAVAILABLE] Maximum number of connections from
		// user+IP exceeded" is a limit, not an outage.
		return provider.Throttled("imap login", 0, err)
	case ierr.Code == imap.ResponseCodeUnavailable, ierr.Code == imap.ResponseCodeServerBug,
		ierr.Code == imap.ResponseCodeInUse:
		return provider.Transient("imap login", err)
	case ierr.Code == imap.ResponseCodePrivacyRequired:
		return provider.Permanent("imap login", err)
	case ierr.Type == imap.StatusResponseTypeBad:
		return provider.Permanent("imap login", err)
	}
	// NO with AUTHENTICATIONFAILED, AUTHORIZATIONFAILED, EXPIRED, CONTACTADMIN or no
	// code at all: the credentials were refused.
	return provider.Auth("imap login", err)
}

// imapError classifies the error of an IMAP command on a logged-in session.
func (c *Conn) imapError(op string, err error) error {
	var ierr *imap.Error
	if !errors.As(err, &ierr) {
		return provider.Classify(op, err)
	}
	switch {
	case ierr.Code == imap.ResponseCodeNonExistent, ierr.Code == imap.ResponseCodeTryCreate:
		return provider.NotFound(op, err)
	case ierr.Code == imap.ResponseCodeLimit, tooMany(ierr.Text):
		return provider.Throttled(op, 0, err)
	case ierr.Code == imap.ResponseCodeOverQuota, ierr.Code == imap.ResponseCodeNoPerm,
		ierr.Code == imap.ResponseCodeCannot, ierr.Code == imap.ResponseCodeTooBig:
		return provider.Permanent(op, err)
	case ierr.Code == imap.ResponseCodeAuthenticationFailed, ierr.Code == imap.ResponseCodeAuthorizationFailed,
		ierr.Code == imap.ResponseCodeExpired:
		return provider.Auth(op, err)
	case ierr.Type == imap.StatusResponseTypeBad:
		// The server did not understand us: retrying the same command cannot help.
		return provider.Permanent(op, err)
	}
	return provider.Transient(op, err)
}

// tooMany reports whether a server's text says it limits connections or rate.
func tooMany(text string) bool {
	t := strings.ToLower(text)
	return strings.Contains(t, "too many") || strings.Contains(t, "rate limit") ||
		strings.Contains(t, "ratelimit") || strings.Contains(t, "try again later") ||
		strings.Contains(t, "maximum number of connections")
}

// notFound returns a not-found error wrapping crmsync.ErrNotFound.
func notFound(op, format string, args ...any) error {
	return provider.NotFound(op, fmt.Errorf(format+": %w", append(args, crmsync.ErrNotFound)...))
}
