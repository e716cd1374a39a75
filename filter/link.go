package filter

import (
	"context"

	"github.com/crmsync/crmsync"
)

// Link resolves each email the mailbox is about to track (Resolve) and applies the result
// (Resolution.Apply): its regarding record, how it was correlated and its resolved
// parties. It also fills in the email's correlation keys (TrackingToken, ConversationID,
// SubjectHash), so that a Store can find it when a later message answers it. It makes a
// Screener the engine's Linker as well as its Screener.
func (s *Screener) Link(ctx context.Context, mb *crmsync.Mailbox, emails []*crmsync.Email) error {
	for _, e := range emails {
		r, err := s.Resolve(ctx, mb, e)
		if err != nil {
			return err
		}
		r.Apply(e)
		s.Keys(e)
	}
	return nil
}

// Keys fills in e's correlation keys from its subject and Thread-Index: the tracking
// token, the conversation id and the subject hash. The engine calls it (through Link) on
// tracked emails; a host calls it on outgoing CRM email before storing it.
func (s *Screener) Keys(e *crmsync.Email) {
	if tok, ok := s.corr.cfg.Token.Find(e.Subject); ok {
		e.TrackingToken = tok
	}
	if e.ThreadIndex != "" {
		if id, err := ConversationID(e.ThreadIndex); err == nil {
			e.ConversationID = id
		}
	}
	e.SubjectHash = s.corr.norm.SubjectHash(e.Subject)
}
