package gmail

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/schedule"
)

// Gmail's documented limits; the package documentation gives their sources.
const (
	// WorkspaceMessagesPerDay is a Google Workspace user's daily sending limit (rolling 24 hours).
	WorkspaceMessagesPerDay = 2000
	// WorkspaceTrialMessagesPerDay is the limit of a Workspace trial account.
	WorkspaceTrialMessagesPerDay = 500
	// WorkspaceRecipientsPerDay is a Workspace user's limit of recipients (counted per message) per day.
	WorkspaceRecipientsPerDay = 10000
	// ConsumerMessagesPerDay is a consumer (gmail.com) account's daily sending limit.
	ConsumerMessagesPerDay = 500
	// RecipientsPerMessage is the most recipients (To, Cc and Bcc) of one message sent over SMTP by an IMAP
	// or POP user, Workspace and consumer accounts alike.
	RecipientsPerMessage = 100
	// ConnectionsPerAccount is the most simultaneous IMAP connections Gmail accepts for one account.
	ConnectionsPerAccount = 15
)

// Window is the span over which Gmail counts a day's sending: a rolling 24 hours, not a calendar day.
const Window = 24 * time.Hour

// Limits are the sending limits of one Gmail account. A zero field means no limit.
type Limits struct {
	// MessagesPerDay bounds the messages sent in any Window.
	MessagesPerDay int
	// RecipientsPerDay bounds the recipients (each message counts each of its envelope recipients) in any
	// Window.
	RecipientsPerDay int
	// RecipientsPerMessage bounds the envelope recipients of one message; a larger message cannot be sent
	// through Gmail's SMTP at all, and fails permanently.
	RecipientsPerMessage int
}

// WorkspaceLimits are the limits of a paid Google Workspace account.
func WorkspaceLimits() Limits {
	return Limits{MessagesPerDay: WorkspaceMessagesPerDay, RecipientsPerDay: WorkspaceRecipientsPerDay, RecipientsPerMessage: RecipientsPerMessage}
}

// ConsumerLimits are the limits of a consumer Google account (an address at gmail.com or googlemail.com).
func ConsumerLimits() Limits {
	return Limits{MessagesPerDay: ConsumerMessagesPerDay, RecipientsPerMessage: RecipientsPerMessage}
}

// DefaultLimits returns ConsumerLimits for an address at gmail.com or googlemail.com and WorkspaceLimits for
// any other domain (a Workspace domain). Hosts whose Workspace accounts are on trial, or whose admins have
// other limits, set Config.Limits.
func DefaultLimits(mb *crmsync.Mailbox) Limits {
	if mb != nil {
		addr := strings.ToLower(mb.Address)
		if strings.HasSuffix(addr, "@gmail.com") || strings.HasSuffix(addr, "@googlemail.com") {
			return ConsumerLimits()
		}
	}
	return WorkspaceLimits()
}

// bucketSpan is the resolution of the sending window: sends are counted per minute, and a minute's sends
// free together one Window after the minute ends, so the count errs on the safe side by under a minute.
const bucketSpan = time.Minute

type bucket struct {
	start      time.Time
	msgs, rcpt int
}

// window counts one account's sends over the last Window.
type window struct {
	buckets      []bucket  // oldest first
	blockedUntil time.Time // Google refused a send for its limit: hold back until then
}

func (w *window) prune(now time.Time) {
	i := 0
	for i < len(w.buckets) && !w.buckets[i].start.Add(bucketSpan+Window).After(now) {
		i++
	}
	w.buckets = w.buckets[i:]
}

func (w *window) usage() (msgs, rcpt int) {
	for _, b := range w.buckets {
		msgs += b.msgs
		rcpt += b.rcpt
	}
	return msgs, rcpt
}

// freeAt returns when the oldest counted minute leaves the window.
func (w *window) freeAt(now time.Time) time.Time {
	if len(w.buckets) == 0 {
		return now
	}
	return w.buckets[0].start.Add(bucketSpan + Window)
}

func (w *window) add(now time.Time, msgs, rcpt int) {
	start := now.Truncate(bucketSpan)
	if n := len(w.buckets); n > 0 && w.buckets[n-1].start.Equal(start) {
		w.buckets[n-1].msgs += msgs
		w.buckets[n-1].rcpt += rcpt
		return
	}
	w.buckets = append(w.buckets, bucket{start: start, msgs: msgs, rcpt: rcpt})
}

// quotas holds every account's window; one Dialer shares it among its connections.
type quotas struct {
	mu      sync.Mutex
	windows map[string]*window // by mailbox ID
}

func newQuotas() *quotas { return &quotas{windows: map[string]*window{}} }

func (q *quotas) window(key string) *window {
	w := q.windows[key]
	if w == nil {
		w = &window{}
		q.windows[key] = w
	}
	return w
}

// allowance returns how many more messages (of one recipient) may be sent now, and when one more may be when
// that is zero.
func (q *quotas) allowance(key string, lim Limits, now time.Time) (int, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.window(key)
	w.prune(now)
	if now.Before(w.blockedUntil) {
		return 0, w.blockedUntil
	}
	msgs, rcpt := w.usage()
	n := -1
	if lim.MessagesPerDay > 0 {
		n = lim.MessagesPerDay - msgs
	}
	if lim.RecipientsPerDay > 0 && (n < 0 || lim.RecipientsPerDay-rcpt < n) {
		n = lim.RecipientsPerDay - rcpt
	}
	if n < 0 {
		return int(^uint(0) >> 1), time.Time{} // no limit
	}
	if n == 0 {
		return 0, w.freeAt(now)
	}
	return n, time.Time{}
}

// reservation is a send counted in an account's window before it is made; cancel uncounts a send that
// certainly did not go out.
type reservation struct {
	q    *quotas
	key  string
	at   time.Time
	rcpt int
	done bool
}

// reserve counts one message with rcpt recipients in the account's window, or returns the throttled error of
// a limit that would be exceeded: KindThrottled with RetryAfter until enough of the window frees, wrapping
// ErrSendingLimit and provider.ErrNotSubmitted, and marked as the account's own.
func (q *quotas) reserve(key string, mb *crmsync.Mailbox, lim Limits, rcpt int, now time.Time) (*reservation, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.window(key)
	w.prune(now)
	if now.Before(w.blockedUntil) {
		return nil, limitError(mb, "Google refused the last send for its sending limit", w.blockedUntil.Sub(now))
	}
	msgs, used := w.usage()
	if lim.MessagesPerDay > 0 && msgs+1 > lim.MessagesPerDay {
		return nil, limitError(mb, fmt.Sprintf("%d messages sent in the last 24 hours, the limit is %d", msgs, lim.MessagesPerDay), q.waitFor(w, now, func(b bucket) int { return b.msgs }, msgs+1-lim.MessagesPerDay))
	}
	if lim.RecipientsPerDay > 0 && used+rcpt > lim.RecipientsPerDay {
		return nil, limitError(mb, fmt.Sprintf("%d recipients in the last 24 hours and %d more in this message, the limit is %d", used, rcpt, lim.RecipientsPerDay), q.waitFor(w, now, func(b bucket) int { return b.rcpt }, used+rcpt-lim.RecipientsPerDay))
	}
	w.add(now, 1, rcpt)
	return &reservation{q: q, key: key, at: now.Truncate(bucketSpan), rcpt: rcpt}, nil
}

// waitFor returns how long until at least need units of count leave the window.
func (q *quotas) waitFor(w *window, now time.Time, count func(bucket) int, need int) time.Duration {
	freed := 0
	for _, b := range w.buckets {
		freed += count(b)
		if freed >= need {
			return b.start.Add(bucketSpan + Window).Sub(now)
		}
	}
	return Window
}

// cancel uncounts the reserved send.
func (r *reservation) cancel() {
	if r == nil || r.done {
		return
	}
	r.done = true
	r.q.mu.Lock()
	defer r.q.mu.Unlock()
	w := r.q.window(r.key)
	for i := range w.buckets {
		if w.buckets[i].start.Equal(r.at) {
			w.buckets[i].msgs--
			w.buckets[i].rcpt -= r.rcpt
			return
		}
	}
}

// block holds the account's sends back until until: Google refused a send for its limit, which this
// Dialer's count did not foresee (mail sent by other clients counts too).
func (q *quotas) block(key string, until time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.window(key)
	if until.After(w.blockedUntil) {
		w.blockedUntil = until
	}
}

func limitError(mb *crmsync.Mailbox, why string, retryAfter time.Duration) error {
	err := provider.Throttled("gmail send", retryAfter, fmt.Errorf("%s: %w (%s): the message was not sent; sending resumes in %v",
		who(mb), ErrSendingLimit, why, retryAfter.Round(time.Second)))
	return mark(err, provider.ErrNotSubmitted, errAccountLimit)
}

// accountSlots caps the simultaneous IMAP connections per account.
type accountSlots struct {
	max   int
	mu    sync.Mutex
	slots map[string]chan struct{}
}

func newAccountSlots(max int) *accountSlots {
	return &accountSlots{max: max, slots: map[string]chan struct{}{}}
}

// acquire waits for one of the account's slots, or until ctx ends (a throttled error of the account).
func (a *accountSlots) acquire(ctx context.Context, key string) (func(), error) {
	a.mu.Lock()
	ch := a.slots[key]
	if ch == nil {
		ch = make(chan struct{}, a.max)
		a.slots[key] = ch
	}
	a.mu.Unlock()
	select {
	case ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-ch }) }, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, ctx.Err()
		}
		return nil, mark(provider.Throttled("gmail connect", 0, fmt.Errorf(
			"all %d IMAP connections Gmail allows per account are in use", a.max)), errAccountLimit)
	}
}

// throttler is the Throttler of a Gmail profile: a provider.Limiter of the profile's MaxConnections that
// pauses every connection for a throttled error of the profile (the token endpoint's 429), but not for one
// of a single account (its sending limit, its connections), which holds back that mailbox only.
type throttler struct {
	*provider.Limiter
}

// Observe implements provider.Throttler.
func (t throttler) Observe(err error) {
	if errors.Is(err, errAccountLimit) {
		return
	}
	t.Limiter.Observe(err)
}

// NewThrottler implements provider.ThrottlerMaker: the engine asks it for each Gmail profile's Throttler.
// It caps the profile's concurrent connections at p.Connections() and, unlike a plain provider.Limiter, does
// not pause the whole profile when one account reaches one of its own limits (sending per day, connections
// per account): those hold back that mailbox only (see Conn.SendAllowance).
func (d *Dialer) NewThrottler(p *crmsync.ServerProfile, clock schedule.Clock) provider.Throttler {
	l, err := provider.NewLimiter(provider.LimiterConfig{Capacity: p.Connections(), Clock: clock})
	if err != nil {
		// Connections() is at least 1 for a valid profile; an invalid one gets the default cap.
		l, _ = provider.NewLimiter(provider.LimiterConfig{Capacity: crmsync.DefaultMaxConnections, Clock: clock})
	}
	return throttler{Limiter: l}
}
