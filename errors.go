package crmsync

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error by the action the engine takes on it.
type Kind uint8

// Error kinds. The zero value, KindNone, is the kind of a nil error.
const (
	KindNone Kind = iota
	// KindAuth: credentials refused, consent revoked, 401. The workload is disabled at
	// once with an alert until Test & Enable passes again.
	KindAuth
	// KindThrottled: the server asked to slow down (429, "too many connections").
	// Retried no sooner than RetryAfter.
	KindThrottled
	// KindTransient: network trouble, timeouts, 5xx. Retried with backoff; after the
	// policy's retry limit it is treated as permanent.
	KindTransient
	// KindCursorExpired: the provider no longer accepts the saved cursor (a changed
	// UIDVALIDITY, Graph's 410). The engine clears the cursor and resyncs; duplicates
	// are refused by the Store.
	KindCursorExpired
	// KindNotFound: the item or folder is gone. The item is skipped.
	KindNotFound
	// KindPermanent: retrying cannot help (mailbox gone, bad configuration, a refused
	// certificate). The workload is disabled at once with an alert.
	KindPermanent
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindAuth:
		return "auth"
	case KindThrottled:
		return "throttled"
	case KindTransient:
		return "transient"
	case KindCursorExpired:
		return "cursor expired"
	case KindNotFound:
		return "not found"
	case KindPermanent:
		return "permanent"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Retryable reports whether the engine retries an error of this kind.
func (k Kind) Retryable() bool {
	return k == KindThrottled || k == KindTransient || k == KindCursorExpired
}

// Error is an error classified by Kind. Providers return it from every operation that
// fails, so the engine knows what to do.
type Error struct {
	Kind Kind
	// Op names the operation that failed, e.g. "imap fetch" or "smtp send".
	Op string
	// RetryAfter is the server's requested wait, when it gave one.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	var s string
	if e.Op != "" {
		s = e.Op + ": "
	}
	s += e.Kind.String()
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of kind k for operation op with a formatted cause; %w wraps.
func Errorf(k Kind, op, format string, args ...any) error {
	return &Error{Kind: k, Op: op, Err: fmt.Errorf(format, args...)}
}

// WithKind returns err classified as kind k for operation op. A nil err stays nil.
func WithKind(k Kind, op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Op: op, Err: err}
}

// KindOf tells the kind of any error: the Kind of the first *Error in its chain; for an
// unclassified error, KindPermanent for validation errors, mapping conflicts and
// ErrNotSupported, KindNotFound for ErrNotFound, and KindTransient for anything else, so
// that an unknown failure is retried a bounded number of times and then treated as
// permanent. KindOf(nil) is KindNone.
func KindOf(err error) Kind {
	if err == nil {
		return KindNone
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	var ce *MappingConflictError
	var ve *ValidationError
	switch {
	case errors.As(err, &ce), errors.As(err, &ve), errors.Is(err, ErrNotSupported):
		return KindPermanent
	case errors.Is(err, ErrNotFound):
		return KindNotFound
	}
	return KindTransient
}

// RetryAfter returns the wait the server asked for, if err carries one.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// ErrNotFound is returned (wrapped) when a record does not exist.
var ErrNotFound = errors.New("crmsync: not found")

// ErrNotSupported is returned (wrapped) when a server cannot do what was asked, such as
// ACT on a POP3 mailbox. It is permanent.
var ErrNotSupported = errors.New("crmsync: not supported")
