package memstore

import (
	"context"
	"time"

	"github.com/crmsync/crmsync"
)

// The lookups the filter package uses for correlation beyond Message-IDs
// (filter.TokenIndex, ConversationIndex and SubjectIndex). They scan every email: fine
// for a reference store; a database indexes the three columns.

// EmailsByTrackingToken returns the emails whose TrackingToken is one of tokens.
func (s *Store) EmailsByTrackingToken(ctx context.Context, tokens []string) (map[string][]*crmsync.Email, error) {
	return s.lookup(ctx, tokens, time.Time{}, func(e *crmsync.Email) string { return e.TrackingToken })
}

// EmailsByConversationID returns the emails whose ConversationID is one of ids.
func (s *Store) EmailsByConversationID(ctx context.Context, ids []string) (map[string][]*crmsync.Email, error) {
	return s.lookup(ctx, ids, time.Time{}, func(e *crmsync.Email) string { return e.ConversationID })
}

// EmailsBySubjectHash returns the emails created at or after since whose SubjectHash is
// one of hashes.
func (s *Store) EmailsBySubjectHash(ctx context.Context, hashes []string, since time.Time) (map[string][]*crmsync.Email, error) {
	return s.lookup(ctx, hashes, since, func(e *crmsync.Email) string { return e.SubjectHash })
}

func (s *Store) lookup(ctx context.Context, keys []string, since time.Time, key func(*crmsync.Email) string) (map[string][]*crmsync.Email, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		if k != "" {
			want[k] = true
		}
	}
	out := make(map[string][]*crmsync.Email)
	if len(want) == 0 {
		return out, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.emails {
		if k := key(e); want[k] && !e.CreatedAt.Before(since) {
			out[k] = append(out[k], e)
		}
	}
	for k, es := range out {
		sortEmails(es)
		out[k] = cloneEmails(es)
	}
	return out, nil
}
