package filter

import (
	"context"

	"github.com/crmsync/crmsync"
)

// Link resolves each email the mailbox is about to track (Resolve) and applies the result
// (Resolution.Apply): its regarding record and how it was correlated. It makes a Screener
// the engine's Linker as well as its Screener.
func (s *Screener) Link(ctx context.Context, mb *crmsync.Mailbox, emails []*crmsync.Email) error {
	for _, e := range emails {
		r, err := s.Resolve(ctx, mb, e)
		if err != nil {
			return err
		}
		r.Apply(e)
	}
	return nil
}
