package provider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/crmsync/crmsync"
)

// Classify returns err as a *crmsync.Error for operation op, choosing the kind from what
// the error is: an error that already has a kind keeps it; a refused, reset or timed-out
// connection, an unexpected EOF or a deadline is transient; a certificate that fails
// verification is permanent (retrying will not fix it); a host name that does not exist is
// permanent; anything else is transient. A canceled context is returned as it is, since
// it is the caller's decision and not the server's fault. Classify(op, nil) is nil.
func Classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *crmsync.Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &crmsync.Error{Kind: kindOfNetError(err), Op: op, Err: err}
}

func kindOfNetError(err error) crmsync.Kind {
	var (
		unknownAuth  x509.UnknownAuthorityError
		hostErr      x509.HostnameError
		invalidCert  x509.CertificateInvalidError
		verifyErr    *tls.CertificateVerificationError
		dnsErr       *net.DNSError
		recordHeader tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &verifyErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &invalidCert):
		return crmsync.KindPermanent
	case errors.As(err, &recordHeader):
		// Speaking TLS to a plaintext port (or the reverse): a configuration error.
		return crmsync.KindPermanent
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return crmsync.KindPermanent
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return crmsync.KindTransient
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return crmsync.KindTransient
	}
	return crmsync.KindTransient
}

// Auth returns err as an authentication error of operation op.
func Auth(op string, err error) error { return crmsync.WithKind(crmsync.KindAuth, op, err) }

// Permanent returns err as a permanent error of operation op.
func Permanent(op string, err error) error { return crmsync.WithKind(crmsync.KindPermanent, op, err) }

// Transient returns err as a transient error of operation op.
func Transient(op string, err error) error { return crmsync.WithKind(crmsync.KindTransient, op, err) }

// NotFound returns err as a not-found error of operation op.
func NotFound(op string, err error) error { return crmsync.WithKind(crmsync.KindNotFound, op, err) }

// CursorExpired returns err as an expired-cursor error of operation op.
func CursorExpired(op string, err error) error {
	return crmsync.WithKind(crmsync.KindCursorExpired, op, err)
}

// Throttled returns err as a throttled error of operation op that asks for a wait of
// retryAfter (zero when the server named none).
func Throttled(op string, retryAfter time.Duration, err error) error {
	if err == nil {
		err = errors.New("throttled by server")
	}
	return &crmsync.Error{Kind: crmsync.KindThrottled, Op: op, RetryAfter: retryAfter, Err: err}
}

// HTTPStatusKind returns the kind of an HTTP error status: 401 auth; 403 permanent
// (consent or permission missing); 404 not found; 410 cursor expired (a delta link gone);
// 408 and 5xx transient; 429 (and 503 with Retry-After, see FromHTTP) throttled; other
// 4xx permanent. A 2xx or 3xx status is KindNone.
func HTTPStatusKind(status int) crmsync.Kind {
	switch {
	case status < 400:
		return crmsync.KindNone
	case status == http.StatusUnauthorized:
		return crmsync.KindAuth
	case status == http.StatusNotFound:
		return crmsync.KindNotFound
	case status == http.StatusGone:
		return crmsync.KindCursorExpired
	case status == http.StatusTooManyRequests:
		return crmsync.KindThrottled
	case status == http.StatusRequestTimeout, status >= 500:
		return crmsync.KindTransient
	}
	return crmsync.KindPermanent
}

// FromHTTP classifies a failed HTTP response of operation op from its status and its
// Retry-After header; cause describes the failure (the server's error body, say). A 503
// that carries Retry-After counts as throttled. It returns nil for a status below 400.
func FromHTTP(op string, status int, retryAfter string, now time.Time, cause error) error {
	k := HTTPStatusKind(status)
	if k == crmsync.KindNone {
		return nil
	}
	if cause == nil {
		cause = errors.New(http.StatusText(status))
	}
	ra := ParseRetryAfter(retryAfter, now)
	if status == http.StatusServiceUnavailable && ra > 0 {
		k = crmsync.KindThrottled
	}
	return &crmsync.Error{Kind: k, Op: op, RetryAfter: ra, Err: &HTTPError{Status: status, Err: cause}}
}

// HTTPError is the cause of an error made from an HTTP response.
type HTTPError struct {
	Status int
	Err    error
}

func (e *HTTPError) Error() string { return "http " + strconv.Itoa(e.Status) + ": " + e.Err.Error() }
func (e *HTTPError) Unwrap() error { return e.Err }

// ParseRetryAfter reads a Retry-After value, in seconds or as an HTTP date, relative to
// now. It returns 0 for an empty, malformed or past value.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
