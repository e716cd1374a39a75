package smtp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// ErrNotSubmitted is wrapped by a Send error after which the message definitely did not
// go out: the failure came before the server was sent the message (connecting,
// authenticating, MAIL, RCPT, the DATA command), or the server refused the message
// with an answer to its end. The caller may send the email again without looking for
// it first. A Send error that does not wrap it may have left the message delivered.
//
// It is provider.ErrNotSubmitted, the value the engine tests for (it then returns the
// email to Pending Send), under the name this package's callers look for.
var ErrNotSubmitted = provider.ErrNotSubmitted

// notSubmittedError marks an error as one after which nothing was submitted.
type notSubmittedError struct{ err error }

func (e *notSubmittedError) Error() string        { return e.err.Error() + " (the message was not submitted)" }
func (e *notSubmittedError) Unwrap() error        { return e.err }
func (e *notSubmittedError) Is(target error) bool { return target == ErrNotSubmitted }

// notSubmitted returns err marked with ErrNotSubmitted. The *crmsync.Error that
// classifies it stays outermost, so that its Op leads the message.
func notSubmitted(err error) error {
	if err == nil || errors.Is(err, ErrNotSubmitted) {
		return err
	}
	if ce, ok := err.(*crmsync.Error); ok {
		c := *ce
		c.Err = &notSubmittedError{err: ce.Err}
		return &c
	}
	return &notSubmittedError{err: err}
}

// classify classifies an SMTP failure of operation op. dataSent says whether the
// message may have reached the server (the server answered DATA with 354): a broken
// connection then leaves the outcome unknown, which is transient.
func classify(op string, err error, dataSent bool) error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		if dataSent {
			return provider.Transient(op, fmt.Errorf("outcome unknown: %w", err))
		}
		return provider.Classify(op, err)
	}
	enh := se.EnhancedCode
	switch {
	case se.Code == 535, se.Code == 534, se.Code == 530,
		enh[0] == 5 && enh[1] == 7 && (enh[2] == 8 || enh[2] == 9):
		return provider.Auth(op, err)
	case se.Code == 454 && enh[1] == 7:
		// 454 4.7.0: temporary authentication failure.
		return provider.Transient(op, err)
	case se.Code/100 == 4 && (tooMany(se.Message) || enh == smtp.EnhancedCode{4, 7, 28}):
		return provider.Throttled(op, 0, err)
	case se.Code/100 == 4:
		return provider.Transient(op, err)
	case se.Code/100 == 5:
		return provider.Permanent(op, err)
	}
	return provider.Transient(op, err)
}

// tooMany reports whether a server's text says it limits connections or rate.
func tooMany(text string) bool {
	t := strings.ToLower(text)
	return strings.Contains(t, "too many") || strings.Contains(t, "rate limit") ||
		strings.Contains(t, "ratelimit") || strings.Contains(t, "try again later")
}

// timeoutError returns err, or, when the connection timeout passed (ctx's deadline, or
// a read deadline of the same length), a transient error that says so.
func timeoutError(ctx context.Context, op, addr string, timeout time.Duration, err error) error {
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return provider.Transient(op, fmt.Errorf("%s: no answer within %v: %w", addr, timeout, context.DeadlineExceeded))
	}
	return err
}

// errClosed is the cause of a call on a closed Sender.
var errClosed = errors.New("sender closed")
