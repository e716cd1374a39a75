package schedule

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/crmsync/crmsync"
)

// Policy is the cadence of the workloads and the retry rules. The zero value of each
// field means its default, which is the product's documented behaviour; DefaultPolicy
// returns them filled in.
type Policy struct {
	// Incoming is the wait after an incoming cycle ends. Default 5 minutes.
	Incoming time.Duration
	// Outgoing is the wait between two Pending Send scans. Default 5 minutes.
	Outgoing time.Duration
	// ACTMin and ACTMax bound the wait after an ACT cycle: busy mailboxes wait ACTMin,
	// idle ones ACTMax. Defaults 5 and 12 minutes.
	ACTMin, ACTMax time.Duration
	// ACTMaxWithIncoming replaces ACTMax for a mailbox that also runs incoming email.
	// Default 15 minutes.
	ACTMaxWithIncoming time.Duration
	// ACTBusyItems is the per-cycle item load (a moving average, see UpdateLoad) at
	// which the ACT wait reaches ACTMin. Default 50.
	ACTBusyItems float64

	// MaxRetries is how many times a transient error is retried before it is recorded
	// as permanent and the workload disabled. Default 10.
	MaxRetries int
	// Backoff spaces the retries.
	Backoff Backoff
}

// Backoff computes the wait before retry number n (1-based): Base·Factor^(n−1), capped at
// Max, plus a random share of up to Jitter of it. Jitter only lengthens a wait, so a retry
// never comes sooner than the policy (or a server's Retry-After) allows.
//
// The defaults (Base 5 min, Factor 2, Max 5 min, Jitter 10%) reproduce the product:
// retries five minutes apart. Raise Max above Base for exponential growth.
type Backoff struct {
	Base   time.Duration
	Factor float64
	Max    time.Duration
	Jitter float64 // 0–1; negative means none
}

// Policy defaults.
const (
	DefaultIncoming           = 5 * time.Minute
	DefaultOutgoing           = 5 * time.Minute
	DefaultACTMin             = 5 * time.Minute
	DefaultACTMax             = 12 * time.Minute
	DefaultACTMaxWithIncoming = 15 * time.Minute
	DefaultACTBusyItems       = 50
	DefaultMaxRetries         = 10
	DefaultBackoffBase        = 5 * time.Minute
	DefaultBackoffFactor      = 2
	DefaultBackoffMax         = 5 * time.Minute
	DefaultBackoffJitter      = 0.1
)

// DefaultPolicy returns the product's cadence.
func DefaultPolicy() Policy { return Policy{}.WithDefaults() }

// WithDefaults returns p with every zero field set to its default.
func (p Policy) WithDefaults() Policy {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&p.Incoming, DefaultIncoming)
	def(&p.Outgoing, DefaultOutgoing)
	def(&p.ACTMin, DefaultACTMin)
	def(&p.ACTMax, DefaultACTMax)
	def(&p.ACTMaxWithIncoming, DefaultACTMaxWithIncoming)
	if p.ACTBusyItems == 0 {
		p.ACTBusyItems = DefaultACTBusyItems
	}
	if p.MaxRetries == 0 {
		p.MaxRetries = DefaultMaxRetries
	}
	def(&p.Backoff.Base, DefaultBackoffBase)
	def(&p.Backoff.Max, DefaultBackoffMax)
	if p.Backoff.Factor == 0 {
		p.Backoff.Factor = DefaultBackoffFactor
	}
	if p.Backoff.Jitter == 0 {
		p.Backoff.Jitter = DefaultBackoffJitter
	}
	return p
}

// Validate reports the first field of p (after defaults) that makes no sense.
func (p Policy) Validate() error {
	p = p.WithDefaults()
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"Incoming", p.Incoming}, {"Outgoing", p.Outgoing}, {"ACTMin", p.ACTMin}, {"ACTMax", p.ACTMax},
		{"ACTMaxWithIncoming", p.ACTMaxWithIncoming}, {"Backoff.Base", p.Backoff.Base}, {"Backoff.Max", p.Backoff.Max}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s is negative (%v)", f.name, f.d))
		}
	}
	if p.ACTMin > p.ACTMax || p.ACTMin > p.ACTMaxWithIncoming {
		errs = append(errs, errors.New("ACTMin exceeds ACTMax or ACTMaxWithIncoming"))
	}
	if p.ACTBusyItems < 0 {
		errs = append(errs, errors.New("ACTBusyItems is negative"))
	}
	if p.MaxRetries < 0 {
		errs = append(errs, errors.New("MaxRetries is negative"))
	}
	if p.Backoff.Factor < 1 {
		errs = append(errs, fmt.Errorf("Backoff.Factor %v is below 1", p.Backoff.Factor))
	}
	if p.Backoff.Jitter > 1 {
		errs = append(errs, fmt.Errorf("Backoff.Jitter %v is above 1", p.Backoff.Jitter))
	}
	if p.Backoff.Max < p.Backoff.Base {
		errs = append(errs, errors.New("Backoff.Max is below Backoff.Base"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("schedule: invalid policy: %w", errors.Join(errs...))
	}
	return nil
}

// RunInfo is what the policy needs to know about a mailbox-workload to place its next run.
type RunInfo struct {
	// Load is the moving average of items per cycle (see UpdateLoad); used by ACT.
	Load float64
	// AlsoIncoming is true when the mailbox also runs incoming email; used by ACT.
	AlsoIncoming bool
	// MinInterval is the server profile's minimum polling interval.
	MinInterval time.Duration
}

// Interval returns the wait after a successful cycle of workload w.
func (p Policy) Interval(w crmsync.Workload, info RunInfo) time.Duration {
	p = p.WithDefaults()
	var d time.Duration
	switch w {
	case crmsync.Incoming:
		d = p.Incoming
	case crmsync.Outgoing:
		d = p.Outgoing
	case crmsync.ACT:
		hi := p.ACTMax
		if info.AlsoIncoming {
			hi = p.ACTMaxWithIncoming
		}
		busy := 1.0
		if p.ACTBusyItems > 0 {
			busy = math.Min(1, math.Max(0, info.Load)/p.ACTBusyItems)
		}
		d = hi - time.Duration(float64(hi-p.ACTMin)*busy)
	default:
		d = p.Incoming
	}
	return max(d, info.MinInterval)
}

// Next returns the next run of workload w after a successful cycle that ended at end.
// The next run is always computed from the end of a cycle, so a long cycle delays it.
func (p Policy) Next(w crmsync.Workload, end time.Time, info RunInfo) time.Time {
	return end.Add(p.Interval(w, info))
}

// UpdateLoad folds the item count of the latest cycle into the moving average used for
// the ACT cadence: each cycle weighs half.
func UpdateLoad(prev float64, items int) float64 { return prev/2 + float64(items)/2 }

// Retry decides what follows a failed cycle that ended at end. attempt counts the
// failures in a row, this one included (1 for the first); retryAfter is the server's
// requested wait (0 if none); u is a uniform random number in [0, 1) for the jitter.
// It returns when to retry, or giveUp when the retries are spent.
func (p Policy) Retry(end time.Time, attempt int, retryAfter time.Duration, u float64) (next time.Time, giveUp bool) {
	p = p.WithDefaults()
	if attempt > p.MaxRetries {
		return time.Time{}, true
	}
	d := p.Backoff.Delay(attempt, u)
	if retryAfter > d {
		d = retryAfter
	}
	return end.Add(d), false
}

// Delay returns the wait before retry number attempt (1-based), with u in [0, 1)
// choosing the jitter. Zero fields of b take the defaults.
func (b Backoff) Delay(attempt int, u float64) time.Duration {
	b = Policy{Backoff: b}.WithDefaults().Backoff
	if attempt < 1 {
		attempt = 1
	}
	d := float64(b.Base) * math.Pow(b.Factor, float64(attempt-1))
	if d > float64(b.Max) || math.IsInf(d, 0) {
		d = float64(b.Max)
	}
	u = math.Min(math.Max(u, 0), 1)
	if b.Jitter < 0 {
		b.Jitter = 0
	}
	return time.Duration(d * (1 + b.Jitter*u))
}
