package provider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/schedule"
)

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want crmsync.Kind
	}{
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, crmsync.KindTransient},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, crmsync.KindTransient},
		{"broken pipe", os.NewSyscallError("write", syscall.EPIPE), crmsync.KindTransient},
		{"EOF", io.EOF, crmsync.KindTransient},
		{"wrapped unexpected EOF", fmt.Errorf("reading greeting: %w", io.ErrUnexpectedEOF), crmsync.KindTransient},
		{"timeout net.Error", &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}, crmsync.KindTransient},
		{"deadline exceeded", context.DeadlineExceeded, crmsync.KindTransient},
		{"closed connection", fmt.Errorf("fetch: %w", net.ErrClosed), crmsync.KindTransient},
		{"temporary DNS failure", &net.DNSError{Err: "server misbehaving", Name: "mail.example.com", IsTemporary: true}, crmsync.KindTransient},
		{"unknown error", errors.New("something odd"), crmsync.KindTransient},
		{"unknown authority", x509.UnknownAuthorityError{}, crmsync.KindPermanent},
		{"certificate verification", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, crmsync.KindPermanent},
		{"wrong host name", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "mail.example.com"}, crmsync.KindPermanent},
		{"expired certificate", x509.CertificateInvalidError{Cert: &x509.Certificate{}, Reason: x509.Expired}, crmsync.KindPermanent},
		{"TLS to a plaintext port", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, crmsync.KindPermanent},
		{"no such host", &net.DNSError{Err: "no such host", Name: "nowhere.invalid", IsNotFound: true}, crmsync.KindPermanent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Classify("imap dial", tc.err)
			var ce *crmsync.Error
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.want, ce.Kind)
			assert.Equal(t, "imap dial", ce.Op)
			assert.ErrorIs(t, err, tc.err, "the cause stays in the chain")
			assert.Equal(t, tc.want, crmsync.KindOf(err))
		})
	}
}

func TestClassifyKeepsKindsAndCancellation(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want crmsync.Kind
	}{
		{"auth", Auth("imap login", errors.New("bad password")), crmsync.KindAuth},
		{"not found", NotFound("graph get", errors.New("gone")), crmsync.KindNotFound},
		{"cursor expired", CursorExpired("graph delta", errors.New("410")), crmsync.KindCursorExpired},
		{"permanent", Permanent("smtp", errors.New("relay denied")), crmsync.KindPermanent},
		{"wrapped throttled", fmt.Errorf("during fetch: %w", Throttled("graph", time.Minute, nil)), crmsync.KindThrottled},
		// Already classified as transient, though the cause alone would be permanent.
		{"classified over the cause", Transient("x", x509.UnknownAuthorityError{}), crmsync.KindTransient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Classify("other op", tc.err)
			assert.Same(t, tc.err, err, "an already classified error is returned as it is")
			assert.Equal(t, tc.want, crmsync.KindOf(err))
		})
	}
	assert.Equal(t, time.Minute, crmsync.RetryAfter(Classify("x", tests[4].err)))

	for _, canceled := range []error{context.Canceled, fmt.Errorf("select: %w", context.Canceled)} {
		err := Classify("imap fetch", canceled)
		assert.Same(t, canceled, err, "a canceled context passes through")
		var ce *crmsync.Error
		assert.False(t, errors.As(err, &ce), "a canceled context is not classified")
	}
	assert.NoError(t, Classify("x", nil))
}

func TestKindHelpers(t *testing.T) {
	cause := errors.New("cause")
	for _, tc := range []struct {
		err  error
		want crmsync.Kind
	}{
		{Auth("op", cause), crmsync.KindAuth},
		{Permanent("op", cause), crmsync.KindPermanent},
		{Transient("op", cause), crmsync.KindTransient},
		{NotFound("op", cause), crmsync.KindNotFound},
		{CursorExpired("op", cause), crmsync.KindCursorExpired},
		{Throttled("op", 5*time.Second, cause), crmsync.KindThrottled},
	} {
		assert.Equal(t, tc.want, crmsync.KindOf(tc.err))
		assert.ErrorIs(t, tc.err, cause)
	}
	assert.NoError(t, Auth("op", nil))
	th := Throttled("op", 0, nil)
	assert.Equal(t, crmsync.KindThrottled, crmsync.KindOf(th), "Throttled with no cause is still an error")
	assert.Zero(t, crmsync.RetryAfter(th))
}

func TestHTTPStatusKind(t *testing.T) {
	tests := []struct {
		status int
		want   crmsync.Kind
	}{
		{200, crmsync.KindNone},
		{204, crmsync.KindNone},
		{302, crmsync.KindNone},
		{400, crmsync.KindPermanent},
		{401, crmsync.KindAuth},
		{403, crmsync.KindPermanent},
		{404, crmsync.KindNotFound},
		{408, crmsync.KindTransient},
		{409, crmsync.KindPermanent},
		{410, crmsync.KindCursorExpired},
		{429, crmsync.KindThrottled},
		{500, crmsync.KindTransient},
		{502, crmsync.KindTransient},
		{503, crmsync.KindTransient},
		{504, crmsync.KindTransient},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			assert.Equal(t, tc.want, HTTPStatusKind(tc.status))
		})
	}
}

func TestFromHTTP(t *testing.T) {
	now := t0
	tests := []struct {
		name       string
		status     int
		retryAfter string
		want       crmsync.Kind
		wantAfter  time.Duration
	}{
		{"401", 401, "", crmsync.KindAuth, 0},
		{"403", 403, "", crmsync.KindPermanent, 0},
		{"404", 404, "", crmsync.KindNotFound, 0},
		{"410", 410, "", crmsync.KindCursorExpired, 0},
		{"429 seconds", 429, "120", crmsync.KindThrottled, 2 * time.Minute},
		{"429 HTTP date", 429, now.Add(90 * time.Second).Format(http.TimeFormat), crmsync.KindThrottled, 90 * time.Second},
		{"429 without Retry-After", 429, "", crmsync.KindThrottled, 0},
		{"503 with Retry-After", 503, "30", crmsync.KindThrottled, 30 * time.Second},
		{"503 with a past date", 503, now.Add(-time.Minute).Format(http.TimeFormat), crmsync.KindTransient, 0},
		{"503 without Retry-After", 503, "", crmsync.KindTransient, 0},
		{"500", 500, "", crmsync.KindTransient, 0},
		{"500 with Retry-After", 500, "10", crmsync.KindTransient, 10 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := FromHTTP("graph list", tc.status, tc.retryAfter, now, nil)
			var ce *crmsync.Error
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.want, ce.Kind)
			assert.Equal(t, "graph list", ce.Op)
			assert.Equal(t, tc.wantAfter, ce.RetryAfter)
			var he *HTTPError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, tc.status, he.Status)
			assert.Contains(t, err.Error(), http.StatusText(tc.status))
		})
	}

	t.Run("below 400", func(t *testing.T) {
		assert.NoError(t, FromHTTP("graph list", 200, "", now, nil))
		assert.NoError(t, FromHTTP("graph list", 304, "5", now, errors.New("x")))
	})
	t.Run("cause kept", func(t *testing.T) {
		cause := errors.New(`{"error":{"code":"InvalidAuthenticationToken"}}`)
		err := FromHTTP("graph me", 401, "", now, cause)
		assert.ErrorIs(t, err, cause)
		assert.Equal(t, crmsync.KindAuth, crmsync.KindOf(err))
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := t0
	tests := []struct {
		name string
		v    string
		want time.Duration
	}{
		{"empty", "", 0},
		{"blank", "   ", 0},
		{"zero", "0", 0},
		{"seconds", "5", 5 * time.Second},
		{"seconds with spaces", " 7 ", 7 * time.Second},
		{"negative", "-5", 0},
		{"garbage", "soon", 0},
		{"fraction", "1.5", 0},
		{"future date", now.Add(2 * time.Minute).Format(http.TimeFormat), 2 * time.Minute},
		{"RFC 850 date", now.Add(time.Hour).Format("Monday, 02-Jan-06 15:04:05 GMT"), time.Hour},
		{"past date", now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"now", now.Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, ParseRetryAfter(tc.v, now))
		})
	}
}

// waitQueued waits until n acquisitions are queued in l.
func waitQueued(t *testing.T, l *Limiter, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.waiters) == n
	}, 5*time.Second, time.Millisecond, "waiting for %d queued acquisitions", n)
}

func newLimiter(t *testing.T, cfg LimiterConfig) *Limiter {
	t.Helper()
	l, err := NewLimiter(cfg)
	require.NoError(t, err)
	return l
}

func TestNewLimiterAndCosts(t *testing.T) {
	_, err := NewLimiter(LimiterConfig{})
	assert.Error(t, err, "Capacity 0")
	l := newLimiter(t, LimiterConfig{Capacity: 3})
	ctx := t.Context()

	_, err = l.Acquire(ctx, 4)
	assert.Error(t, err, "a cost above the capacity")
	release, err := l.Acquire(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, 1, l.InUse(), "a cost below 1 counts as 1")
	release()
	release()
	assert.Equal(t, 0, l.InUse(), "releasing twice returns the units once")
	r3, err := l.Acquire(ctx, 3)
	require.NoError(t, err)
	assert.Equal(t, 3, l.MaxInUse())
	r3()
}

// TestLimiterCapacity runs 50 goroutines against a capacity of 5: never more than 5 at
// once, and all 5 in use at some point.
func TestLimiterCapacity(t *testing.T) {
	const capacity, workers = 5, 50
	l := newLimiter(t, LimiterConfig{Capacity: capacity})
	var inUse, peak atomic.Int32
	full := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			release, err := l.Acquire(t.Context(), 1)
			if !assert.NoError(t, err) {
				return
			}
			n := inUse.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			if n == capacity {
				once.Do(func() { close(full) })
			}
			<-full // the first holders wait until the limiter is full
			inUse.Add(-1)
			release()
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, int(peak.Load()), capacity)
	assert.Equal(t, capacity, l.MaxInUse())
	assert.Equal(t, 0, l.InUse())
}

func TestLimiterFIFO(t *testing.T) {
	l := newLimiter(t, LimiterConfig{Capacity: 1})
	hold, err := l.Acquire(t.Context(), 1)
	require.NoError(t, err)
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			release, err := l.Acquire(t.Context(), 1)
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			release()
		})
		waitQueued(t, l, i+1)
	}
	hold()
	wg.Wait()
	assert.Equal(t, []int{0, 1, 2, 3, 4}, order)
}

// TestLimiterNoBarging: a small request does not pass a large one queued before it, and
// takes its turn when the large one gives up.
func TestLimiterNoBarging(t *testing.T) {
	l := newLimiter(t, LimiterConfig{Capacity: 2})
	hold, err := l.Acquire(t.Context(), 1)
	require.NoError(t, err)
	bigCtx, cancelBig := context.WithCancel(t.Context())
	bigErr := make(chan error, 1)
	go func() {
		_, err := l.Acquire(bigCtx, 2)
		bigErr <- err
	}()
	waitQueued(t, l, 1)
	small := make(chan func(), 1)
	go func() {
		r, err := l.Acquire(t.Context(), 1)
		assert.NoError(t, err)
		small <- r
	}()
	waitQueued(t, l, 2)
	assert.Equal(t, 1, l.InUse(), "the free unit waits for the head of the queue")

	cancelBig()
	assert.ErrorIs(t, <-bigErr, context.Canceled)
	release := <-small
	assert.Equal(t, 2, l.InUse())
	release()
	hold()
	assert.Equal(t, 0, l.InUse())
}

func TestLimiterCancelWhileWaiting(t *testing.T) {
	l := newLimiter(t, LimiterConfig{Capacity: 1})
	hold, err := l.Acquire(t.Context(), 1)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx, 1)
		errc <- err
	}()
	waitQueued(t, l, 1)
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	waitQueued(t, l, 0)
	assert.Equal(t, 1, l.InUse())
	hold()
	assert.Equal(t, 0, l.InUse(), "a canceled waiter holds nothing")

	// Cancellation racing with a grant: whichever wins, no unit leaks.
	for range 200 {
		hold, err := l.Acquire(t.Context(), 1)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		got := make(chan func(), 1)
		go func() {
			r, _ := l.Acquire(ctx, 1)
			got <- r
		}()
		waitQueued(t, l, 1)
		go cancel()
		hold()
		if r := <-got; r != nil {
			r()
		}
		cancel()
		require.Equal(t, 0, l.InUse())
	}
}

func TestLimiterObservePause(t *testing.T) {
	clock := schedule.NewFake(t0)
	l := newLimiter(t, LimiterConfig{Capacity: 2, Clock: clock, DefaultPause: 10 * time.Second})
	ctx := t.Context()

	l.Observe(nil)
	l.Observe(Transient("graph", errors.New("503")))
	assert.True(t, l.PausedUntil().IsZero(), "only throttled errors pause")

	l.Observe(fmt.Errorf("cycle: %w", Throttled("graph", 30*time.Second, nil)))
	assert.Equal(t, t0.Add(30*time.Second), l.PausedUntil())
	l.Observe(Throttled("graph", 0, nil))
	assert.Equal(t, t0.Add(30*time.Second), l.PausedUntil(), "a shorter pause does not cut a longer one")

	done := make(chan func(), 1)
	go func() {
		r, err := l.Acquire(ctx, 1)
		assert.NoError(t, err)
		done <- r
	}()
	require.NoError(t, clock.BlockUntil(ctx, 1))
	clock.Advance(29 * time.Second)
	assert.Equal(t, 1, clock.Pending(), "still paused one second before Retry-After")
	select {
	case <-done:
		t.Fatal("Acquire returned during the pause")
	default:
	}
	clock.Advance(time.Second)
	release := <-done
	assert.Equal(t, 1, l.InUse())
	release()

	// A throttled error without Retry-After pauses for DefaultPause.
	l.Observe(Throttled("imap", 0, errors.New("too many connections")))
	assert.Equal(t, clock.Now().Add(10*time.Second), l.PausedUntil())

	// Canceled during a pause: nothing is held.
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := l.Acquire(cctx, 1)
		errc <- err
	}()
	require.NoError(t, clock.BlockUntil(ctx, 1))
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	assert.Equal(t, 0, l.InUse())
}

type makerDialer struct {
	DialerFunc
	made *Limiter
}

func (m *makerDialer) NewThrottler(p *crmsync.ServerProfile, clock schedule.Clock) Throttler {
	m.made, _ = NewLimiter(LimiterConfig{Capacity: 1, Clock: clock})
	return m.made
}

func TestMuxKeepsTheProvidersThrottler(t *testing.T) {
	md := &makerDialer{}
	mux := Mux{crmsync.ServerGmail: md, crmsync.ServerIMAP: DialerFunc(nil)}
	got := mux.NewThrottler(&crmsync.ServerProfile{ID: "g", Kind: crmsync.ServerGmail}, schedule.Real{})
	require.Same(t, md.made, got, "the Gmail dialer's own throttler")
	l, ok := mux.NewThrottler(&crmsync.ServerProfile{ID: "i", Kind: crmsync.ServerIMAP, MaxConnections: 7}, schedule.Real{}).(*Limiter)
	require.True(t, ok)
	assert.Equal(t, 7, l.Capacity(), "other kinds get the profile's connection cap")
}

func TestTLSConfig(t *testing.T) {
	ep := crmsync.Endpoint{Host: "mail.example.test", Port: 993, Security: crmsync.SecurityTLS}
	cfg := TLSConfig(nil, ep)
	assert.Equal(t, "mail.example.test", cfg.ServerName)
	assert.Equal(t, uint16(tls.VersionTLS12), cfg.MinVersion)
	assert.False(t, cfg.InsecureSkipVerify, "verified by default")

	base := &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS13}
	ep.InsecureSkipVerify = true
	cfg = TLSConfig(base, ep)
	assert.Equal(t, "localhost", cfg.ServerName, "the base's ServerName wins")
	assert.Equal(t, uint16(tls.VersionTLS13), cfg.MinVersion)
	assert.True(t, cfg.InsecureSkipVerify, "the endpoint's choice is applied")
	assert.False(t, base.InsecureSkipVerify, "the base is not changed")
}
