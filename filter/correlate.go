package filter

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/crmsync/crmsync"
)

// Smart matching defaults, as the product documents them.
const (
	DefaultMinRecipientMatches = 2
	DefaultMaxRecipientHashes  = 20
	DefaultSmartWindow         = 90 * 24 * time.Hour
)

// CorrelationConfig configures correlation. The zero value is the product's default:
// In-Reply-To/References, tracking tokens in the default format and the conversation
// index on; smart matching off.
type CorrelationConfig struct {
	// Token is the tracking-token format. Zero fields take the defaults.
	Token TokenConfig
	// NoTrackingTokens turns tracking-token correlation off.
	NoTrackingTokens bool
	// NoConversationIndex turns Thread-Index correlation off.
	NoConversationIndex bool
	// SmartMatching turns smart matching on (off by default, as in the product: it
	// links unrelated mail that shares a subject and two addresses).
	SmartMatching bool
	// SubjectPrefixes matches one reply/forward prefix at the start of a subject.
	// Default DefaultSubjectPrefixes.
	SubjectPrefixes *regexp.Regexp
	// MinRecipientMatches is the number of recipient hashes a smart match shares.
	// Default 2.
	MinRecipientMatches int
	// MaxRecipientHashes bounds the recipient hashes kept per email. Default 20.
	MaxRecipientHashes int
	// SmartWindow is how far back smart matching looks. Default 90 days.
	SmartWindow time.Duration
}

func (c CorrelationConfig) withDefaults() (CorrelationConfig, error) {
	if err := c.Token.Validate(); err != nil {
		return c, err
	}
	c.Token = c.Token.WithDefaults()
	if c.SubjectPrefixes == nil {
		c.SubjectPrefixes = DefaultSubjectPrefixes
	}
	if c.MinRecipientMatches == 0 {
		c.MinRecipientMatches = DefaultMinRecipientMatches
	}
	if c.MaxRecipientHashes == 0 {
		c.MaxRecipientHashes = DefaultMaxRecipientHashes
	}
	if c.SmartWindow == 0 {
		c.SmartWindow = DefaultSmartWindow
	}
	var errs []error
	if c.MinRecipientMatches < 1 {
		errs = append(errs, fmt.Errorf("MinRecipientMatches %d is under 1", c.MinRecipientMatches))
	}
	if c.MaxRecipientHashes < c.MinRecipientMatches {
		errs = append(errs, fmt.Errorf("MaxRecipientHashes %d is under MinRecipientMatches", c.MaxRecipientHashes))
	}
	if c.SmartWindow < 0 {
		errs = append(errs, errors.New("SmartWindow is negative"))
	}
	if len(errs) > 0 {
		return c, &crmsync.ValidationError{What: "correlation config", Err: errors.Join(errs...)}
	}
	return c, nil
}

// Match is the result of correlating one email.
type Match struct {
	// Method says how the email was linked: CorrelationNone when nothing matched,
	// CorrelationSkipped when correlation was not attempted.
	Method crmsync.Correlation
	// Email is the CRM email it answers; nil when nothing matched.
	Email *crmsync.Email
	// Key is what matched: the Message-ID, the token, the conversation id or the
	// subject hash.
	Key string
}

// Matched reports whether an email was found.
func (m Match) Matched() bool { return m.Email != nil }

// RegardingID returns the matched email's regarding record, or "".
func (m Match) RegardingID() string {
	if m.Email == nil {
		return ""
	}
	return m.Email.RegardingID
}

// Clock is the source of time; schedule.Clock satisfies it.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Correlator links incoming emails to the CRM emails they answer, in the documented
// order: In-Reply-To, then References (newest first), against stored Message-IDs; the
// tracking token in the subject; the conversation GUID of the Thread-Index; smart
// matching (same subject hash and at least MinRecipientMatches recipient hashes among
// the emails of the SmartWindow). Each method runs one lookup for a whole batch, and
// only for the emails the earlier methods left unmatched.
type Correlator struct {
	cfg      CorrelationConfig
	norm     *SubjectNormalizer
	clock    Clock
	index    EmailIndex
	tokens   TokenIndex
	convs    ConversationIndex
	subjects SubjectIndex
}

// NewCorrelator returns a correlator over index. clock may be nil (the real clock).
func NewCorrelator(index EmailIndex, cfg CorrelationConfig, clock Clock) (*Correlator, error) {
	if index == nil {
		return nil, &crmsync.ValidationError{What: "correlator", Err: errors.New("index is nil")}
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if clock == nil {
		clock = realClock{}
	}
	c := &Correlator{cfg: cfg, norm: NewSubjectNormalizer(cfg.SubjectPrefixes, cfg.Token), clock: clock, index: index}
	c.tokens, _ = index.(TokenIndex)
	c.convs, _ = index.(ConversationIndex)
	c.subjects, _ = index.(SubjectIndex)
	return c, nil
}

// Correlate returns one Match per email. mb is the mailbox the emails arrived in: among
// several candidates its own emails are preferred.
func (c *Correlator) Correlate(ctx context.Context, mb *crmsync.Mailbox, emails []*crmsync.Email) ([]Match, error) {
	ids := make([]string, 0, len(emails))
	for _, e := range emails {
		ids = appendThreadIDs(ids, e)
	}
	var byID map[string][]*crmsync.Email
	if len(ids) > 0 {
		found, err := c.index.EmailsByMessageID(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("filter: correlate in-reply-to: %w", err)
		}
		byID = groupByMessageID(found)
	}
	want := make([]bool, len(emails))
	for i := range want {
		want[i] = true
	}
	return c.correlate(ctx, mb, emails, byID, want)
}

// correlate runs the methods for emails[i] where want[i], with the Message-ID lookup
// done: byID holds the emails of every In-Reply-To and References id.
func (c *Correlator) correlate(ctx context.Context, mb *crmsync.Mailbox, emails []*crmsync.Email,
	byID map[string][]*crmsync.Email, want []bool) ([]Match, error) {
	out := make([]Match, len(emails))
	open := 0
	for i, e := range emails {
		if !want[i] {
			out[i].Method = crmsync.CorrelationSkipped
			continue
		}
		if m, ok := c.byThreadHeaders(mb, e, byID); ok {
			out[i] = m
			continue
		}
		open++
	}
	var err error
	if open > 0 && !c.cfg.NoTrackingTokens && c.tokens != nil {
		if open, err = c.byToken(ctx, mb, emails, out); err != nil {
			return nil, err
		}
	}
	if open > 0 && !c.cfg.NoConversationIndex && c.convs != nil {
		if open, err = c.byConversation(ctx, mb, emails, out); err != nil {
			return nil, err
		}
	}
	if open > 0 && c.cfg.SmartMatching && c.subjects != nil {
		if _, err = c.bySmartMatching(ctx, mb, emails, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func appendThreadIDs(ids []string, e *crmsync.Email) []string {
	if e.InReplyTo != "" {
		ids = append(ids, e.InReplyTo)
	}
	return append(ids, e.References...)
}

func groupByMessageID(es []*crmsync.Email) map[string][]*crmsync.Email {
	m := make(map[string][]*crmsync.Email, len(es))
	for _, e := range es {
		m[e.MessageID] = append(m[e.MessageID], e)
	}
	return m
}

func (c *Correlator) byThreadHeaders(mb *crmsync.Mailbox, e *crmsync.Email, byID map[string][]*crmsync.Email) (Match, bool) {
	if e.InReplyTo != "" {
		if best := pick(mb, e, byID[e.InReplyTo]); best != nil {
			return Match{Method: crmsync.CorrelationInReplyTo, Email: best, Key: e.InReplyTo}, true
		}
	}
	for i := len(e.References) - 1; i >= 0; i-- {
		if best := pick(mb, e, byID[e.References[i]]); best != nil {
			return Match{Method: crmsync.CorrelationInReplyTo, Email: best, Key: e.References[i]}, true
		}
	}
	return Match{}, false
}

func (c *Correlator) byToken(ctx context.Context, mb *crmsync.Mailbox, emails []*crmsync.Email, out []Match) (int, error) {
	toks := make([]string, len(emails))
	var ask []string
	for i, e := range emails {
		if out[i].Method != crmsync.CorrelationNone {
			continue
		}
		if t, ok := c.cfg.Token.Find(e.Subject); ok {
			toks[i] = t
			ask = append(ask, t)
		}
	}
	if len(ask) == 0 {
		return countOpen(out), nil
	}
	found, err := c.tokens.EmailsByTrackingToken(ctx, ask)
	if err != nil {
		return 0, fmt.Errorf("filter: correlate tracking token: %w", err)
	}
	for i, e := range emails {
		if toks[i] == "" || out[i].Method != crmsync.CorrelationNone {
			continue
		}
		if best := pick(mb, e, found[toks[i]]); best != nil {
			out[i] = Match{Method: crmsync.CorrelationTrackingToken, Email: best, Key: toks[i]}
		}
	}
	return countOpen(out), nil
}

func (c *Correlator) byConversation(ctx context.Context, mb *crmsync.Mailbox, emails []*crmsync.Email, out []Match) (int, error) {
	convs := make([]string, len(emails))
	var ask []string
	for i, e := range emails {
		if out[i].Method != crmsync.CorrelationNone || e.ThreadIndex == "" {
			continue
		}
		if id, err := ConversationID(e.ThreadIndex); err == nil {
			convs[i] = id
			ask = append(ask, id)
		}
	}
	if len(ask) == 0 {
		return countOpen(out), nil
	}
	found, err := c.convs.EmailsByConversationID(ctx, ask)
	if err != nil {
		return 0, fmt.Errorf("filter: correlate conversation index: %w", err)
	}
	for i, e := range emails {
		if convs[i] == "" || out[i].Method != crmsync.CorrelationNone {
			continue
		}
		cands := found[convs[i]]
		// The nearest ancestor in the thread is the message answered; without one,
		// any message of the conversation will do.
		var anc []*crmsync.Email
		longest := 0
		for _, x := range cands {
			if IsAncestorOf(x.ThreadIndex, e.ThreadIndex) {
				switch n := len(x.ThreadIndex); {
				case n > longest:
					anc, longest = []*crmsync.Email{x}, n
				case n == longest:
					anc = append(anc, x)
				}
			}
		}
		best := pick(mb, e, anc)
		if best == nil {
			best = pick(mb, e, cands)
		}
		if best != nil {
			out[i] = Match{Method: crmsync.CorrelationConversationIndex, Email: best, Key: convs[i]}
		}
	}
	return countOpen(out), nil
}

func (c *Correlator) bySmartMatching(ctx context.Context, mb *crmsync.Mailbox, emails []*crmsync.Email, out []Match) (int, error) {
	hashes := make([]string, len(emails))
	var ask []string
	for i, e := range emails {
		if out[i].Method != crmsync.CorrelationNone {
			continue
		}
		if h := c.norm.SubjectHash(e.Subject); h != "" {
			hashes[i] = h
			ask = append(ask, h)
		}
	}
	if len(ask) == 0 {
		return countOpen(out), nil
	}
	since := c.clock.Now().Add(-c.cfg.SmartWindow)
	found, err := c.subjects.EmailsBySubjectHash(ctx, ask, since)
	if err != nil {
		return 0, fmt.Errorf("filter: correlate smart matching: %w", err)
	}
	for i, e := range emails {
		if hashes[i] == "" || out[i].Method != crmsync.CorrelationNone {
			continue
		}
		mine := RecipientHashes(e, c.cfg.MaxRecipientHashes)
		var best []*crmsync.Email
		most := 0
		for _, x := range found[hashes[i]] {
			if emailTime(x).Before(since) {
				continue
			}
			n := common(mine, RecipientHashes(x, c.cfg.MaxRecipientHashes))
			if n < c.cfg.MinRecipientMatches {
				continue
			}
			switch {
			case n > most:
				best, most = []*crmsync.Email{x}, n
			case n == most:
				best = append(best, x)
			}
		}
		if b := pick(mb, e, best); b != nil {
			out[i] = Match{Method: crmsync.CorrelationSmartMatching, Email: b, Key: hashes[i]}
		}
	}
	return countOpen(out), nil
}

func countOpen(out []Match) int {
	n := 0
	for _, m := range out {
		if m.Method == crmsync.CorrelationNone {
			n++
		}
	}
	return n
}

func common(a, b []string) int {
	n := 0
	for _, x := range a {
		for _, y := range b {
			if x == y {
				n++
				break
			}
		}
	}
	return n
}

// pick chooses the email answered among candidates: never the message itself (the same
// Message-ID, tracked in another mailbox); then one with a regarding record, one of
// the receiving mailbox, the newest, the smallest ID.
func pick(mb *crmsync.Mailbox, self *crmsync.Email, cands []*crmsync.Email) *crmsync.Email {
	var best *crmsync.Email
	for _, x := range cands {
		if self.MessageID != "" && x.MessageID == self.MessageID {
			continue
		}
		if best == nil || better(mb, x, best) {
			best = x
		}
	}
	return best
}

func better(mb *crmsync.Mailbox, x, y *crmsync.Email) bool {
	if (x.RegardingID != "") != (y.RegardingID != "") {
		return x.RegardingID != ""
	}
	if mb != nil && (x.MailboxID == mb.ID) != (y.MailboxID == mb.ID) {
		return x.MailboxID == mb.ID
	}
	if tx, ty := emailTime(x), emailTime(y); !tx.Equal(ty) {
		return tx.After(ty)
	}
	return x.ID < y.ID
}
