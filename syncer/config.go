package syncer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/crmstore"
	"github.com/crmsync/crmsync/filter"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/schedule"
)

// Config configures an Engine. Store and Dialer are required; every other zero field
// takes the default its comment names.
type Config struct {
	// Store is the host's persistence. Required.
	Store crmstore.Store
	// Dialer opens provider connections; provider.Mux routes by server kind. Required.
	Dialer provider.Dialer

	// ID names this engine as a lease owner. Default: a random ID. Two engines on one
	// Store must have different IDs.
	ID string
	// Clock is the only source of time. Default schedule.Real{}.
	Clock schedule.Clock
	// Policy is the cadence and retry policy; zero fields take the product's defaults.
	Policy schedule.Policy
	// Logger receives structured events. Default: discard.
	Logger *slog.Logger
	// Observer receives metrics hooks. Default: NoopObserver.
	Observer Observer
	// Screener decides, from headers, which incoming messages to track. Default:
	// AcceptScreener, which accepts everything a mailbox's IncomingOption does not
	// exclude outright and skips messages the mailbox already tracked. A
	// *filter.Screener applies the full incoming processing options.
	Screener Screener
	// Linker links the emails an incoming cycle is about to track to CRM records (the
	// regarding record, the correlation method) before they are stored. Default:
	// none. A *filter.Screener is one: set it as both Screener and Linker.
	Linker Linker
	// Stamper prepares an outgoing email when the host sends it (SendEmail): a
	// *filter.Stamper puts a tracking token in its subject. Default: none.
	Stamper Stamper

	// Workers is the number of concurrent cycles per workload, indexed by workload
	// (index 0 unused). Defaults: incoming 32, outgoing 16, ACT 16.
	Workers [crmsync.NumWorkloads + 1]int
	// LeaseDuration is how long a claim is held before it must be renewed; running
	// cycles are renewed when half of it is left. Default 2 minutes.
	LeaseDuration time.Duration
	// CycleTimeout bounds one cycle; a cycle still running then is canceled and counts
	// as a transient failure. Default 5 minutes.
	CycleTimeout time.Duration
	// CycleItems bounds the items (messages, emails, ACT items) one cycle handles; a
	// cycle that stops at the bound runs again at once. Default 500.
	CycleItems int
	// BatchSize is the number of messages asked of the provider per call, each batch
	// committed with its cursor. Default 50.
	BatchSize int
	// PollInterval is the longest the engine sleeps before asking the Store for due
	// work again; it bounds how late work scheduled by another engine is noticed.
	// Default 5 seconds.
	PollInterval time.Duration
	// MaxDeliveryAttempts fails an outgoing email after this many attempts. Default 10.
	MaxDeliveryAttempts int
	// SkipApproval processes mailboxes whose address is not approved. By default only
	// approved mailboxes are processed.
	SkipApproval bool
	// ProfileAlertWindow and ProfileAlertShare: when more than ProfileAlertShare of a
	// profile's mailboxes failed within ProfileAlertWindow, its owner is alerted (at
	// most once per window). Defaults 1 hour and 0.5.
	ProfileAlertWindow time.Duration
	ProfileAlertShare  float64
	// NewMessageID returns a Message-ID (without angle brackets) for an outgoing email
	// that has none. Default: NewMessageID (filter.NewMessageID at the sender's domain).
	NewMessageID func(e *crmsync.Email) string
}

// Config defaults.
const (
	DefaultIncomingWorkers     = 32
	DefaultOutgoingWorkers     = 16
	DefaultACTWorkers          = 16
	DefaultLeaseDuration       = 2 * time.Minute
	DefaultCycleTimeout        = 5 * time.Minute
	DefaultCycleItems          = 500
	DefaultBatchSize           = 50
	DefaultPollInterval        = 5 * time.Second
	DefaultMaxDeliveryAttempts = 10
	DefaultProfileAlertWindow  = time.Hour
	DefaultProfileAlertShare   = 0.5
)

func (c Config) withDefaults() Config {
	if c.ID == "" {
		c.ID = "engine-" + randomHex(8)
	}
	if c.Clock == nil {
		c.Clock = schedule.Real{}
	}
	c.Policy = c.Policy.WithDefaults()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = NoopObserver{}
	}
	if c.Screener == nil {
		c.Screener = AcceptScreener{Store: c.Store}
	}
	defWorkers := [crmsync.NumWorkloads + 1]int{0, DefaultIncomingWorkers, DefaultOutgoingWorkers, DefaultACTWorkers}
	for w := 1; w <= crmsync.NumWorkloads; w++ {
		if c.Workers[w] == 0 {
			c.Workers[w] = defWorkers[w]
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.LeaseDuration, DefaultLeaseDuration)
	def(&c.CycleTimeout, DefaultCycleTimeout)
	def(&c.PollInterval, DefaultPollInterval)
	def(&c.ProfileAlertWindow, DefaultProfileAlertWindow)
	if c.CycleItems == 0 {
		c.CycleItems = DefaultCycleItems
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxDeliveryAttempts == 0 {
		c.MaxDeliveryAttempts = DefaultMaxDeliveryAttempts
	}
	if c.ProfileAlertShare == 0 {
		c.ProfileAlertShare = DefaultProfileAlertShare
	}
	if c.NewMessageID == nil {
		c.NewMessageID = NewMessageID
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("Store is nil"))
	}
	if c.Dialer == nil {
		errs = append(errs, errors.New("Dialer is nil"))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Policy: %w", err))
	}
	for w := 1; w <= crmsync.NumWorkloads; w++ {
		if c.Workers[w] < 0 {
			errs = append(errs, fmt.Errorf("Workers[%s] is negative", crmsync.Workload(w)))
		}
	}
	if c.LeaseDuration < time.Second {
		errs = append(errs, fmt.Errorf("LeaseDuration %v is under a second", c.LeaseDuration))
	}
	if c.CycleTimeout < 0 || c.PollInterval < 0 {
		errs = append(errs, errors.New("CycleTimeout and PollInterval may not be negative"))
	}
	if c.CycleItems < 0 || c.BatchSize < 0 || c.MaxDeliveryAttempts < 0 {
		errs = append(errs, errors.New("CycleItems, BatchSize and MaxDeliveryAttempts may not be negative"))
	}
	if c.ProfileAlertShare < 0 || c.ProfileAlertShare > 1 {
		errs = append(errs, fmt.Errorf("ProfileAlertShare %v is outside 0–1", c.ProfileAlertShare))
	}
	if len(errs) > 0 {
		return fmt.Errorf("syncer: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

// NewMessageID returns a new Message-ID for e, without angle brackets: filter.NewMessageID
// at the domain of e's sender (or "crmsync.invalid" when it has none or a malformed one).
func NewMessageID(e *crmsync.Email) string {
	var domain string
	if i := strings.LastIndexByte(e.From.Email, '@'); i >= 0 {
		domain = e.From.Email[i+1:]
	}
	return filter.NewMessageID(domain)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// Screener decides which incoming messages a mailbox tracks, from their headers only,
// before any body is fetched: one verdict per header, true to track. The filter package
// provides the full incoming processing options; a host may supply its own.
type Screener interface {
	Screen(ctx context.Context, mb *crmsync.Mailbox, headers []*crmsync.Email) ([]bool, error)
}

// Linker links tracked emails to CRM records. Link may set any field of the emails
// (RegardingID, Correlation, ...); an error fails the cycle, which is retried.
type Linker interface {
	Link(ctx context.Context, mb *crmsync.Mailbox, emails []*crmsync.Email) error
}

// Stamper prepares an outgoing email for sending, e.g. with a tracking token in its
// subject. It is called inside the Store's update of the email and must not call the
// Store.
type Stamper interface {
	Stamp(ctx context.Context, e *crmsync.Email) error
}

// AcceptScreener is the default Screener: it tracks every message unless the mailbox's
// IncomingOption is IncomingNone, and skips (without fetching the body) a message whose
// Message-ID the mailbox already tracked. With a nil Store it skips that check.
type AcceptScreener struct {
	Store crmstore.EmailStore
}

// Screen implements Screener.
func (s AcceptScreener) Screen(ctx context.Context, mb *crmsync.Mailbox, headers []*crmsync.Email) ([]bool, error) {
	out := make([]bool, len(headers))
	if mb.IncomingOption == crmsync.IncomingNone {
		return out, nil
	}
	var seen map[string]bool
	if s.Store != nil {
		ids := make([]string, 0, len(headers))
		for _, h := range headers {
			if h.MessageID != "" {
				ids = append(ids, h.MessageID)
			}
		}
		if len(ids) > 0 {
			known, err := s.Store.EmailsByMessageID(ctx, ids)
			if err != nil {
				return nil, err
			}
			for _, e := range known {
				if e.MailboxID == mb.ID {
					if seen == nil {
						seen = make(map[string]bool)
					}
					seen[e.MessageID] = true
				}
			}
		}
	}
	for i, h := range headers {
		out[i] = h.MessageID == "" || !seen[h.MessageID]
	}
	return out, nil
}
