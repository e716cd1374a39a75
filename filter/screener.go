package filter

import (
	"context"
	"errors"
	"fmt"

	"github.com/crmsync/crmsync"
)

// DefaultMaxMatches is the number of records sharing an address above which the address
// is left unresolved.
const DefaultMaxMatches = 100

// Config configures a Screener. Index is required; every other zero field takes the
// default its comment names.
type Config struct {
	// Index finds tracked emails: duplicates and correlation. Required. A
	// crmstore.Store will do; see EmailIndex for the optional lookups.
	Index EmailIndex
	// Directory resolves addresses to CRM records, for the sender-based options and
	// Resolve. Default: no address resolves.
	Directory Directory
	// Mailboxes finds recipients' mailboxes, so their incoming options count too.
	// Default: only the receiving mailbox's option counts.
	Mailboxes Mailboxes
	// Correlation configures correlation.
	Correlation CorrelationConfig
	// OneActivity keeps email between CRM users as one activity instead of two (the
	// sender's and each recipient's, the default): a Message-ID tracked in any
	// mailbox is then a duplicate everywhere.
	OneActivity bool
	// Manual reports whether the user asked to track a message (for instance, it
	// carries the "tracked" category). Default: never.
	Manual func(*crmsync.Email) bool
	// Folders returns the folder tracking rules of a mailbox's user, or nil. A
	// message in a rule's folder, or in one of the mailbox's TrackedFolders, is
	// tracked whatever the incoming option. Default: no rules.
	Folders func(mb *crmsync.Mailbox) *FolderRules
	// Clock is the source of time (the smart-matching window). Default: the real
	// clock.
	Clock Clock
	// MaxMatches: an address more records than this share stays unresolved.
	// Default 100.
	MaxMatches int
}

// Screener decides which incoming messages a mailbox tracks and resolves the ones it
// tracks. Its Screen method has the shape of syncer.Screener, so an engine takes it as
// its Screener. It is safe for concurrent use.
type Screener struct {
	cfg  Config
	corr *Correlator
}

// NewScreener validates cfg and returns a screener. It starts nothing.
func NewScreener(cfg Config) (*Screener, error) {
	if cfg.Index == nil {
		return nil, &crmsync.ValidationError{What: "screener config", Err: errors.New("Index is nil")}
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.MaxMatches == 0 {
		cfg.MaxMatches = DefaultMaxMatches
	}
	if cfg.MaxMatches < 0 {
		return nil, &crmsync.ValidationError{What: "screener config", Err: fmt.Errorf("MaxMatches %d is negative", cfg.MaxMatches)}
	}
	corr, err := NewCorrelator(cfg.Index, cfg.Correlation, cfg.Clock)
	if err != nil {
		return nil, err
	}
	cfg.Correlation = corr.cfg
	return &Screener{cfg: cfg, corr: corr}, nil
}

// Correlator returns the screener's correlator.
func (s *Screener) Correlator() *Correlator { return s.corr }

// Screen returns one verdict per header, true to track: the Track of Decide's
// decisions. It matches syncer.Screener.
func (s *Screener) Screen(ctx context.Context, mb *crmsync.Mailbox, headers []*crmsync.Email) ([]bool, error) {
	ds, err := s.Decide(ctx, mb, headers)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(ds))
	for i, d := range ds {
		out[i] = d.Track
	}
	return out, nil
}

// Decide returns one decision per header for mailbox mb, which received them. Manual
// tracking is told by Config.Manual, folder tracking by the message's Folder.
func (s *Screener) Decide(ctx context.Context, mb *crmsync.Mailbox, headers []*crmsync.Email) ([]Decision, error) {
	in := make([]Input, len(headers))
	for i, h := range headers {
		in[i].Email = h
	}
	return s.DecideInputs(ctx, mb, in)
}

// DecideInputs is Decide with the bypass given per message. The decision order:
//
//  1. a Message-ID the mailbox already tracked is refused (duplicate);
//  2. manual and folder tracking accept, whatever the option;
//  3. otherwise the message is offered to the receiving mailbox and then to the
//     mailbox of each recipient (To, Cc, Bcc) that has one; the first whose incoming
//     option accepts it decides. When none does, the first refusal that is not
//     IncomingNone's gives the reason, else "no recipient match".
//
// It makes at most one call to each lookup for the whole batch: Index (Message-IDs and
// thread headers, then each further correlation method), Mailboxes and Directory.
func (s *Screener) DecideInputs(ctx context.Context, mb *crmsync.Mailbox, in []Input) ([]Decision, error) {
	out := make([]Decision, len(in))
	byID, err := s.lookupIDs(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("filter: screen mailbox %s: %w", mb.ID, err)
	}
	open := make([]bool, len(in))
	anyOpen := false
	for i, x := range in {
		e := x.Email
		switch {
		case s.duplicate(mb, e, byID):
			out[i] = Decision{Reason: ReasonDuplicate, Match: Match{Method: crmsync.CorrelationSkipped}}
		case x.Bypass == BypassManual || (x.Bypass == BypassNone && s.cfg.Manual != nil && s.cfg.Manual(e)):
			out[i] = Decision{Track: true, Reason: ReasonManual, Match: Match{Method: crmsync.CorrelationSkipped}}
		case x.Bypass == BypassFolder || s.trackedFolder(mb, e.Folder):
			out[i] = Decision{Track: true, Reason: ReasonFolder, Match: Match{Method: crmsync.CorrelationSkipped}}
		default:
			open[i], anyOpen = true, true
		}
	}
	if !anyOpen {
		return out, nil
	}
	cands, err := s.candidates(ctx, mb, in, open)
	if err != nil {
		return nil, fmt.Errorf("filter: screen mailbox %s: %w", mb.ID, err)
	}
	needCorr := make([]bool, len(in))
	needSender := make([]bool, len(in))
	for i := range in {
		for _, c := range cands[i] {
			switch c.IncomingOption {
			case crmsync.IncomingReplies:
				needCorr[i] = true
			case crmsync.IncomingFromCRM, crmsync.IncomingFromEnabled:
				needSender[i] = true
			}
		}
	}
	emails := make([]*crmsync.Email, len(in))
	for i, x := range in {
		emails[i] = x.Email
	}
	matches, err := s.corr.correlate(ctx, mb, emails, byID, needCorr)
	if err != nil {
		return nil, fmt.Errorf("filter: screen mailbox %s: %w", mb.ID, err)
	}
	senders, err := s.senders(ctx, mb, emails, needSender)
	if err != nil {
		return nil, fmt.Errorf("filter: screen mailbox %s: %w", mb.ID, err)
	}
	for i := range in {
		if !open[i] {
			continue
		}
		out[i] = s.decideOpen(cands[i], matches[i], senders[i])
	}
	return out, nil
}

// lookupIDs fetches the emails of every Message-ID, In-Reply-To and References id.
func (s *Screener) lookupIDs(ctx context.Context, in []Input) (map[string][]*crmsync.Email, error) {
	ids := make([]string, 0, 2*len(in))
	for _, x := range in {
		if x.Email.MessageID != "" {
			ids = append(ids, x.Email.MessageID)
		}
		ids = appendThreadIDs(ids, x.Email)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	found, err := s.cfg.Index.EmailsByMessageID(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("find message ids: %w", err)
	}
	return groupByMessageID(found), nil
}

func (s *Screener) duplicate(mb *crmsync.Mailbox, e *crmsync.Email, byID map[string][]*crmsync.Email) bool {
	if e.MessageID == "" {
		return false
	}
	for _, x := range byID[e.MessageID] {
		if s.cfg.OneActivity || x.MailboxID == mb.ID {
			return true
		}
	}
	return false
}

func (s *Screener) trackedFolder(mb *crmsync.Mailbox, folder string) bool {
	if folder == "" {
		return false
	}
	for _, f := range mb.TrackedFolders {
		if sameFolder(f, folder) {
			return true
		}
	}
	if s.cfg.Folders != nil {
		if r := s.cfg.Folders(mb); r != nil {
			_, ok := r.Lookup(folder)
			return ok
		}
	}
	return false
}

// candidates returns, per open message, the receiving mailbox and then the distinct
// mailboxes of its recipients.
func (s *Screener) candidates(ctx context.Context, mb *crmsync.Mailbox, in []Input, open []bool) ([][]*crmsync.Mailbox, error) {
	out := make([][]*crmsync.Mailbox, len(in))
	for i := range in {
		if open[i] {
			out[i] = []*crmsync.Mailbox{mb}
		}
	}
	if s.cfg.Mailboxes == nil {
		return out, nil
	}
	var addrs []string
	seen := make(map[string]bool)
	for i, x := range in {
		if !open[i] {
			continue
		}
		eachRecipient(x.Email, func(a crmsync.Address) {
			n := normAddr(a.Email)
			if n != "" && !seen[n] && n != normAddr(mb.Address) {
				seen[n] = true
				addrs = append(addrs, n)
			}
		})
	}
	if len(addrs) == 0 {
		return out, nil
	}
	found, err := s.cfg.Mailboxes.MailboxesByAddress(ctx, addrs)
	if err != nil {
		return nil, fmt.Errorf("find recipient mailboxes: %w", err)
	}
	if len(found) == 0 {
		return out, nil
	}
	for i, x := range in {
		if !open[i] {
			continue
		}
		eachRecipient(x.Email, func(a crmsync.Address) {
			if r := found[normAddr(a.Email)]; r != nil && !containsMailbox(out[i], r.ID) {
				out[i] = append(out[i], r)
			}
		})
	}
	return out, nil
}

// eachRecipient calls fn with e's To, Cc and Bcc addresses, in that order.
func eachRecipient(e *crmsync.Email, fn func(crmsync.Address)) {
	for _, as := range [...][]crmsync.Address{e.To, e.Cc, e.Bcc} {
		for _, a := range as {
			fn(a)
		}
	}
}

func containsMailbox(mbs []*crmsync.Mailbox, id string) bool {
	for _, m := range mbs {
		if m.ID == id {
			return true
		}
	}
	return false
}

// sender is what the sender-based options need to know about a message's sender.
type sender struct {
	valid bool
	party *Party
}

func (s *Screener) senders(ctx context.Context, mb *crmsync.Mailbox, emails []*crmsync.Email, want []bool) ([]sender, error) {
	out := make([]sender, len(emails))
	var addrs []string
	for i, e := range emails {
		if !want[i] {
			continue
		}
		a := normAddr(e.From.Email)
		if validAddress(a) {
			out[i].valid = true
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 || s.cfg.Directory == nil {
		return out, nil
	}
	found, err := s.cfg.Directory.PartiesByAddress(ctx, addrs)
	if err != nil {
		return nil, fmt.Errorf("resolve senders: %w", err)
	}
	for i, e := range emails {
		if out[i].valid {
			out[i].party, _ = choose(found[normAddr(e.From.Email)], mb, s.cfg.MaxMatches)
		}
	}
	return out, nil
}

func (s *Screener) decideOpen(cands []*crmsync.Mailbox, m Match, snd sender) Decision {
	var refused *Decision
	for _, c := range cands {
		d := decideOption(c.IncomingOption, m, snd)
		d.Mailbox = c.ID
		d.Match = m
		if d.Track {
			return d
		}
		if refused == nil && c.IncomingOption != crmsync.IncomingNone {
			refused = &d
		}
	}
	if refused != nil {
		return *refused
	}
	return Decision{Reason: ReasonNoRecipientMatch, Match: m}
}

// decideOption applies one mailbox's incoming option.
func decideOption(opt crmsync.IncomingOption, m Match, snd sender) Decision {
	switch opt {
	case crmsync.IncomingAll:
		return Decision{Track: true, Reason: ReasonAcceptAll}
	case crmsync.IncomingReplies:
		if m.Matched() {
			return Decision{Track: true, Reason: ReasonCorrelationMatch}
		}
		return Decision{Reason: ReasonNoCorrelationMatch}
	case crmsync.IncomingFromCRM, crmsync.IncomingFromEnabled:
		switch p := snd.party; {
		case !snd.valid || p == nil:
			return Decision{Reason: ReasonInvalidSender}
		case p.Kind.Internal():
			return Decision{Reason: ReasonInternalEmail, Sender: p}
		case opt == crmsync.IncomingFromEnabled || p.Kind.Customer():
			return Decision{Track: true, Reason: ReasonSenderMatch, Sender: p}
		default:
			return Decision{Reason: ReasonInvalidSender, Sender: p}
		}
	}
	return Decision{Reason: ReasonNoRecipientMatch}
}
