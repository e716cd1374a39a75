package filter

import (
	"context"
	"fmt"

	"github.com/crmsync/crmsync"
)

// Role is the part an address plays in an email.
type Role uint8

// Roles.
const (
	RoleFrom Role = iota + 1
	RoleTo
	RoleCc
	RoleBcc
)

// String returns "from", "to", "cc" or "bcc".
func (r Role) String() string {
	switch r {
	case RoleFrom:
		return "from"
	case RoleTo:
		return "to"
	case RoleCc:
		return "cc"
	case RoleBcc:
		return "bcc"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// ResolvedParty is one address of an email and the CRM record it resolved to.
type ResolvedParty struct {
	Role    Role
	Address crmsync.Address
	// Party is the record the address resolved to; nil when it stays an address: no
	// record has it, or more than MaxMatches do.
	Party *Party
	// Matches is the number of records that have the address.
	Matches int
}

// Activity is one CRM email activity a message should exist as.
type Activity struct {
	MailboxID string
	// Direction is Outgoing for the sender's activity, Incoming for a recipient's.
	Direction crmsync.Direction
}

// Resolution is how a tracked email is linked to CRM records.
type Resolution struct {
	// Regarding is the record the email is set regarding, or "".
	Regarding string
	// Correlation is how Regarding was found: the correlation method, or
	// CorrelationSkipped when a folder rule or an existing regarding decided.
	Correlation crmsync.Correlation
	// Correlated is the CRM email the message answers, or nil.
	Correlated *crmsync.Email
	// Parties are the sender, then To, Cc and Bcc, in the email's order.
	Parties []ResolvedParty
	// Internal is true when the sender and at least one recipient resolved to CRM
	// users or queues.
	Internal bool
	// Activities are the activities the message should exist as. Always the receiving
	// mailbox's (incoming); for internal email whose sender has a mailbox, first the
	// sender's (outgoing) too, unless Config.OneActivity is set. The engine tracks
	// the receiving mailbox's; the sender's is the CRM email it sent, or the one its
	// own mailbox tracks.
	Activities []Activity
}

// Apply sets e's RegardingID, Correlation and Parties from r. Each party keeps its
// address; a resolved one also gets its record, with the kind's name ("user", "queue",
// "contact", "account", "lead" or "other") as its RecordKind.
func (r Resolution) Apply(e *crmsync.Email) {
	e.RegardingID = r.Regarding
	e.Correlation = r.Correlation
	e.Parties = nil
	if len(r.Parties) > 0 {
		e.Parties = make([]crmsync.Party, len(r.Parties))
	}
	for i, p := range r.Parties {
		ep := crmsync.Party{Role: p.Role.partyRole(), Address: p.Address}
		if p.Party != nil {
			ep.RecordKind, ep.RecordID = recordKind(p.Party.Kind), p.Party.ID
		}
		e.Parties[i] = ep
	}
}

// partyRole returns the crmsync.PartyRole of r.
func (r Role) partyRole() crmsync.PartyRole {
	switch r {
	case RoleFrom:
		return crmsync.PartyFrom
	case RoleTo:
		return crmsync.PartyTo
	case RoleCc:
		return crmsync.PartyCc
	case RoleBcc:
		return crmsync.PartyBcc
	}
	return 0
}

// recordKind is the RecordKind of a party of kind k. A Directory may return a kind
// this package does not know; it resolves last, as another email-enabled record, and
// is stored as one, so that no stored kind is a name only this version prints.
func recordKind(k PartyKind) string {
	if k < PartyUser || k > PartyOther {
		return PartyOther.String()
	}
	return k.String()
}

// Resolve links email e, which mailbox mb received and tracks, to CRM records:
//
//   - Regarding: a folder rule for e's folder wins; else a regarding already set on
//     e (set by hand) is kept; else the correlated email's regarding is copied.
//   - Parties: from, to, cc and bcc are each resolved through the Directory (one
//     call) to one record: by kind in the order user, queue, contact, account, lead,
//     other; among records of that kind the mailbox owner's (owned by the mailbox's
//     user, or the user itself) wins, then the smallest ID. An address more than
//     MaxMatches records share, or none, stays unresolved.
//   - Activities: see Resolution.Activities.
func (s *Screener) Resolve(ctx context.Context, mb *crmsync.Mailbox, e *crmsync.Email) (Resolution, error) {
	var r Resolution
	folderRegarding := ""
	if s.cfg.Folders != nil && e.Folder != "" {
		if rules := s.cfg.Folders(mb); rules != nil {
			folderRegarding, _ = rules.Lookup(e.Folder)
		}
	}
	switch {
	case folderRegarding != "":
		r.Regarding, r.Correlation = folderRegarding, crmsync.CorrelationSkipped
	default:
		ms, err := s.corr.Correlate(ctx, mb, []*crmsync.Email{e})
		if err != nil {
			return r, fmt.Errorf("filter: resolve email in mailbox %s: %w", mb.ID, err)
		}
		r.Correlated = ms[0].Email
		if e.RegardingID != "" {
			r.Regarding, r.Correlation = e.RegardingID, crmsync.CorrelationSkipped
		} else {
			r.Regarding, r.Correlation = ms[0].RegardingID(), ms[0].Method
		}
	}
	if err := s.resolveParties(ctx, mb, e, &r); err != nil {
		return r, fmt.Errorf("filter: resolve email in mailbox %s: %w", mb.ID, err)
	}
	if err := s.activities(ctx, mb, e, &r); err != nil {
		return r, fmt.Errorf("filter: resolve email in mailbox %s: %w", mb.ID, err)
	}
	return r, nil
}

func (s *Screener) resolveParties(ctx context.Context, mb *crmsync.Mailbox, e *crmsync.Email, r *Resolution) error {
	add := func(role Role, as ...crmsync.Address) {
		for _, a := range as {
			r.Parties = append(r.Parties, ResolvedParty{Role: role, Address: a})
		}
	}
	if e.From.Email != "" {
		add(RoleFrom, e.From)
	}
	add(RoleTo, e.To...)
	add(RoleCc, e.Cc...)
	add(RoleBcc, e.Bcc...)
	if s.cfg.Directory == nil || len(r.Parties) == 0 {
		return nil
	}
	addrs := make([]string, 0, len(r.Parties))
	for _, p := range r.Parties {
		if a := normAddr(p.Address.Email); validAddress(a) {
			addrs = append(addrs, a)
		}
	}
	found, err := s.cfg.Directory.PartiesByAddress(ctx, addrs)
	if err != nil {
		return err
	}
	senderInternal, recipientInternal := false, false
	for i := range r.Parties {
		p := &r.Parties[i]
		p.Party, p.Matches = choose(found[normAddr(p.Address.Email)], mb, s.cfg.MaxMatches)
		if p.Party != nil && p.Party.Kind.Internal() {
			if p.Role == RoleFrom {
				senderInternal = true
			} else {
				recipientInternal = true
			}
		}
	}
	r.Internal = senderInternal && recipientInternal
	return nil
}

func (s *Screener) activities(ctx context.Context, mb *crmsync.Mailbox, e *crmsync.Email, r *Resolution) error {
	here := Activity{MailboxID: mb.ID, Direction: crmsync.DirectionIncoming}
	r.Activities = []Activity{here}
	if !r.Internal || s.cfg.OneActivity || s.cfg.Mailboxes == nil {
		return nil
	}
	from := normAddr(e.From.Email)
	found, err := s.cfg.Mailboxes.MailboxesByAddress(ctx, []string{from})
	if err != nil {
		return err
	}
	if smb := found[from]; smb != nil && smb.ID != mb.ID {
		r.Activities = []Activity{{MailboxID: smb.ID, Direction: crmsync.DirectionOutgoing}, here}
	}
	return nil
}

// choose picks the record an address resolves to among those that have it (see
// Resolve), and returns how many there were. More than max leaves it unresolved.
func choose(ps []Party, mb *crmsync.Mailbox, max int) (*Party, int) {
	if len(ps) == 0 || len(ps) > max {
		return nil, len(ps)
	}
	owner := ""
	if mb != nil && mb.Owner.Kind == crmsync.OwnerUser {
		owner = mb.Owner.ID
	}
	best := -1
	for i, p := range ps {
		if best < 0 || betterParty(p, ps[best], owner) {
			best = i
		}
	}
	p := ps[best]
	return &p, len(ps)
}

func betterParty(p, q Party, owner string) bool {
	if rp, rq := kindRank(p.Kind), kindRank(q.Kind); rp != rq {
		return rp < rq
	}
	po := owner != "" && (p.OwnerID == owner || (p.Kind == PartyUser && p.ID == owner))
	qo := owner != "" && (q.OwnerID == owner || (q.Kind == PartyUser && q.ID == owner))
	if po != qo {
		return po
	}
	return p.ID < q.ID
}

// kindRank orders kinds for resolution; an unknown kind ranks after PartyOther.
func kindRank(k PartyKind) int {
	if k < PartyUser || k > PartyOther {
		return int(PartyOther) + 1
	}
	return int(k)
}
