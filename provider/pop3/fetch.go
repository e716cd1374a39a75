package pop3

import (
	"context"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/mailparse"
)

// Inbox is the Folder of every email a POP3 connection returns: POP3 reads the inbox
// only.
const Inbox = "INBOX"

// listed is one message of a session's maildrop.
type listed struct {
	number int    // in this session
	uid    string // UIDL, stable across sessions
	size   int64  // from LIST
}

// candidate is a new message whose header was read.
type candidate struct {
	m    listed
	e    *crmsync.Email
	full []byte // the whole message, when it was read for its header
}

// FetchIncoming returns the messages of the maildrop whose UIDL is not in req.Cursor,
// in message-number order, at most req.Max of them (More says whether others remain).
// Messages are never deleted from the server.
//
// It reads UIDL and LIST once per session, then each new message's header with TOP n 0
// (RETR where the server has no TOP), leaves out the messages received before
// req.Since (by ReceivedAt: see the package documentation), asks req.Screen about the rest with
// header-only emails, and downloads with RETR only the accepted ones, parsing them on
// GOMAXPROCS goroutines while the next ones arrive. Where the server offers
// PIPELINING, the TOP commands of the batch are pipelined, then its RETR commands, so
// that a batch costs a few round trips whatever its size (see Client.TopMany). A message that
// cannot be parsed, is gone, or is larger than Config.MaxMessageSize is reported in
// Batch.Failed. The batch's cursor holds every UIDL looked at, screened in or out or
// failed, and drops the UIDLs no longer on the server. An unreadable cursor is a
// cursor-expired error; a server without UIDL, a permanent one. POP3 reads the inbox
// only: req.Folders is ignored.
func (c *Conn) FetchIncoming(ctx context.Context, req provider.FetchRequest) (*provider.Batch, error) {
	seen, err := decodeCursor(req.Cursor)
	if err != nil {
		return nil, provider.CursorExpired("pop3 fetch", fmt.Errorf("%s: %w", c.who, err))
	}
	s, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	b, err := c.fetch(ctx, s, seen, req)
	c.endSession(s, err == nil && b.More)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (c *Conn) fetch(ctx context.Context, s *session, seen []string, req provider.FetchRequest) (*provider.Batch, error) {
	if !s.listed {
		l, err := c.list(ctx, s)
		if err != nil {
			return nil, err
		}
		s.listing, s.listed = l, true
	}
	inCursor := make(map[string]bool, len(seen))
	for _, u := range seen {
		inCursor[u] = true
	}
	var fresh []listed
	for _, m := range s.listing {
		if !inCursor[m.uid] {
			fresh = append(fresh, m)
		}
	}
	limit := req.Max
	if limit <= 0 {
		limit = c.d.cfg.MaxMessages
	}
	take := fresh[:min(limit, len(fresh))]
	b := &provider.Batch{More: len(fresh) > len(take)}

	candidates, err := c.headers(ctx, s, take, req, b)
	if err != nil {
		return nil, err
	}
	accepted, err := screen(ctx, req.Screen, candidates)
	if err != nil {
		return nil, err
	}
	if err := c.bodies(ctx, s, candidates, accepted, req.AttachmentLimit, b); err != nil {
		return nil, err
	}

	// The cursor: what it held and is still on the server, and what this batch looked at.
	onServer := make(map[string]bool, len(s.listing))
	for _, m := range s.listing {
		onServer[m.uid] = true
	}
	next := make([]string, 0, len(seen)+len(take))
	for _, u := range seen {
		if onServer[u] {
			next = append(next, u)
		}
	}
	for _, m := range take {
		next = append(next, m.uid)
	}
	b.Cursor = encodeCursor(next)
	c.log.Debug("pop3 fetch", "messages", len(s.listing), "new", len(fresh), "looked", len(take),
		"tracked", len(b.Emails), "failed", len(b.Failed), "more", b.More, "pruned", len(seen)+len(take)-len(next))
	return b, nil
}

// list reads the maildrop: UIDL, and LIST for the sizes. A UIDL listed twice (a broken
// server) counts once, for its first message.
func (c *Conn) list(ctx context.Context, s *session) ([]listed, error) {
	uids, err := s.cl.Uidl(ctx)
	if err != nil {
		return nil, c.classify("pop3 uidl", err, s)
	}
	sizes, err := s.cl.List(ctx)
	if err != nil {
		return nil, c.classify("pop3 list", err, s)
	}
	size := make(map[int]int64, len(sizes))
	for _, m := range sizes {
		size[m.Number] = m.Size
	}
	out := make([]listed, 0, len(uids))
	dup := make(map[string]bool, len(uids))
	for _, u := range uids {
		if dup[u.UID] {
			continue
		}
		dup[u.UID] = true
		out = append(out, listed{number: u.Number, uid: u.UID, size: size[u.Number]})
	}
	return out, nil
}

// headers reads the header of each message of take and returns those to screen:
// parsed, and received at or after req.Since. Messages whose header cannot be read go
// to b.Failed; messages gone from the server are left out.
func (c *Conn) headers(ctx context.Context, s *session, take []listed, req provider.FetchRequest, b *provider.Batch) ([]candidate, error) {
	heads, err := c.readHeaders(ctx, s, take)
	if err != nil {
		return nil, err
	}
	var out []candidate
	for i, m := range take {
		h := heads[i]
		if !h.read {
			continue // gone
		}
		e, err := headerEmail(h.raw, c.d.cfg.Clock.Now())
		if err != nil {
			b.Failed = append(b.Failed, provider.FailedItem{
				Ref: provider.ItemRef{Folder: Inbox, ID: m.uid},
				Err: provider.Permanent("pop3 parse", fmt.Errorf("%s: message %s: %w", c.who, m.uid, err)),
			})
			continue
		}
		e.ProviderID, e.Size = m.uid, m.size
		if !req.Since.IsZero() && e.ReceivedAt.Before(req.Since) {
			continue // received before the effective start
		}
		cd := candidate{m: m, e: e}
		if h.full {
			cd.full = h.raw
		}
		out = append(out, cd)
	}
	return out, nil
}

// header is what was read of a message for its header.
type header struct {
	raw  []byte
	read bool // false: the message is gone
	full bool // raw is the whole message
}

// readHeaders reads the header of each message of take with TOP n 0, pipelined where
// the server allows. A message the server has no TOP for, or refuses TOP for, is read
// whole with RETR instead.
func (c *Conn) readHeaders(ctx context.Context, s *session, take []listed) ([]header, error) {
	heads := make([]header, len(take))
	var whole []int // indexes in take to read whole
	if len(s.caps) == 0 || s.caps.Has("TOP") {
		nums := make([]int, len(take))
		for i, m := range take {
			nums[i] = m.number
		}
		err := s.cl.TopMany(ctx, nums, 0, func(i int, raw []byte, err error) error {
			if err != nil {
				whole = append(whole, i) // TOP refused: the whole message gives the header too
			} else {
				heads[i] = header{raw: raw, read: true}
			}
			return nil
		})
		if err != nil {
			return nil, c.classify("pop3 top", err, s)
		}
	} else {
		for i := range take {
			whole = append(whole, i)
		}
	}
	if len(whole) == 0 {
		return heads, nil
	}
	msgs := make([]MessageSize, len(whole))
	for j, i := range whole {
		msgs[j] = MessageSize{Number: take[i].number, Size: take[i].size}
		if msgs[j].Size > c.d.cfg.MaxMessageSize {
			msgs[j].Size = 0 // a buffer that grows with what comes, not with what LIST claims
		}
	}
	err := s.cl.RetrMany(ctx, msgs, func(j int, raw []byte, err error) error {
		i := whole[j]
		if err != nil {
			c.log.Debug("pop3 message gone before its header was read", "uidl", take[i].uid, "error", err)
			return nil
		}
		heads[i] = header{raw: raw, read: true, full: true}
		return nil
	})
	if err != nil {
		return nil, c.classify("pop3 top", err, s)
	}
	return heads, nil
}

// screen asks f about the candidates' header-only emails; nil accepts all. An error of
// f is returned as it is.
func screen(ctx context.Context, f provider.ScreenFunc, candidates []candidate) ([]bool, error) {
	v := make([]bool, len(candidates))
	if len(candidates) == 0 {
		return v, nil
	}
	if f == nil {
		for i := range v {
			v[i] = true
		}
		return v, nil
	}
	headers := make([]*crmsync.Email, len(candidates))
	for i, cd := range candidates {
		headers[i] = cd.e
	}
	got, err := f(ctx, headers)
	if err != nil {
		return nil, err
	}
	if len(got) != len(headers) {
		return nil, crmsync.Errorf(crmsync.KindPermanent, "pop3 screen", "the screen returned %d verdicts for %d messages", len(got), len(headers))
	}
	return got, nil
}

// headerEmail returns the header-only email of a message, from its header (the answer
// to TOP n 0, or the whole message), in the Inbox folder. Its ReceivedAt is the date
// of the newest Received field (the one on top, which the delivering server added),
// else the Date field, else firstSeen: POP3 itself knows no dates. It fails, with a
// *mailparse.ParseError, only when the message has no readable header.
func headerEmail(raw []byte, firstSeen time.Time) (*crmsync.Email, error) {
	e, err := mailparse.ParseHeader(raw)
	if err != nil {
		return nil, err
	}
	e.Folder = Inbox
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = e.SentAt
	}
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = firstSeen
	}
	return e, nil
}
