package gmail

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/crmsync/crmsync"
)

// ErrReconnect is wrapped by the crmsync.KindAuth error of a mailbox whose Google authorization is gone: no
// refresh token, or one Google refuses (invalid_grant: the user revoked access, changed their password, or
// the grant expired). Nothing but a new consent helps: the host asks the user to connect the Gmail account
// again (see the package example), stores the new refresh token and runs Test & Enable.
var ErrReconnect = errors.New("reconnect the Gmail account: sign in with Google again to grant access, then run Test & Enable")

// ErrSendingLimit is wrapped by the crmsync.KindThrottled error of a Send held back because the mailbox
// reached one of Gmail's sending limits (see Limits), by this provider's own count or by Google's refusal.
// Such an error also wraps provider.ErrNotSubmitted: the message did not go out, and its RetryAfter says
// when the limit frees.
var ErrSendingLimit = errors.New("gmail sending limit reached")

// errAccountLimit marks a throttled error that concerns one Gmail account (its sending limit, its
// simultaneous connections), not the profile: the profile's Throttler does not pause the other mailboxes
// for it.
var errAccountLimit = errors.New("gmail account limit")

// marked is an error that also matches markers with errors.Is, without changing its message or its kind.
type marked struct {
	err     error
	markers []error
}

// Error is the marked error's message.
func (e *marked) Error() string { return e.err.Error() }

// Unwrap returns the error and its markers.
func (e *marked) Unwrap() []error {
	return append([]error{e.err}, e.markers...)
}

// mark returns err that also matches each of markers. A nil err stays nil.
func mark(err error, markers ...error) error {
	if err == nil {
		return nil
	}
	var add []error
	for _, m := range markers {
		if !errors.Is(err, m) {
			add = append(add, m)
		}
	}
	if len(add) == 0 {
		return err
	}
	return &marked{err: err, markers: add}
}

// accountScoped marks a throttled error as the account's own.
func accountScoped(err error) error {
	if crmsync.KindOf(err) != crmsync.KindThrottled {
		return err
	}
	return mark(err, errAccountLimit)
}

// smtpReplyError returns the SMTP reply in err's chain, if the server answered with one.
func smtpReplyError(err error) (*smtp.SMTPError, bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se, true
	}
	return nil, false
}

// isSendingLimitReply reports whether an SMTP reply is Google's refusal for a sending limit, such as
// "550 5.4.5 Daily user sending limit exceeded" or "421 4.7.0 ... sending limit".
func isSendingLimitReply(se *smtp.SMTPError) bool {
	if se.EnhancedCode == (smtp.EnhancedCode{5, 4, 5}) || se.EnhancedCode == (smtp.EnhancedCode{4, 4, 5}) {
		return true
	}
	msg := strings.ToLower(se.Message)
	return strings.Contains(msg, "sending limit") || strings.Contains(msg, "sending quota") ||
		strings.Contains(msg, "daily user sending") || strings.Contains(msg, "quota exceeded")
}

// tooMany reports whether a server's text says it limits connections or rate.
func tooMany(text string) bool {
	t := strings.ToLower(text)
	return strings.Contains(t, "too many") || strings.Contains(t, "rate limit") || strings.Contains(t, "try again later")
}

// errorf returns an error of kind k for op, formatted.
func errorf(k crmsync.Kind, op, format string, args ...any) error {
	return &crmsync.Error{Kind: k, Op: op, Err: fmt.Errorf(format, args...)}
}
