package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
)

// The lookups the filter package uses for correlation beyond Message-IDs
// (filter.TokenIndex, ConversationIndex and SubjectIndex), with memstore's semantics.
// Each is a read of one partial index of migration 0002, which holds only the emails
// that have the key: the query repeats the index's condition (key <> ''), without
// which SQLite does not use the index and PostgreSQL cannot prove it for a parameter.
// There is no ORDER BY, so that no planner prefers an index that gives the order
// (emails_created) to the one that finds the rows; the few emails of each key are
// sorted here.

// EmailsByTrackingToken returns the emails of any mailbox whose TrackingToken is one of
// tokens, by token, each list ordered by CreatedAt, then ID. Empty tokens are ignored,
// and a token without emails is missing from the map.
func (s *Store) EmailsByTrackingToken(ctx context.Context, tokens []string) (map[string][]*crmsync.Email, error) {
	out, err := s.emailsByKey(ctx, "tracking_token", tokens, false, time.Time{}, func(e *crmsync.Email) string { return e.TrackingToken })
	if err != nil {
		return nil, fmt.Errorf("sqlstore: emails by tracking token: %w", err)
	}
	return out, nil
}

// EmailsByConversationID returns the emails of any mailbox whose ConversationID is one
// of ids, by id, each list ordered by CreatedAt, then ID. Empty ids are ignored, and an
// id without emails is missing from the map.
func (s *Store) EmailsByConversationID(ctx context.Context, ids []string) (map[string][]*crmsync.Email, error) {
	out, err := s.emailsByKey(ctx, "conversation_id", ids, false, time.Time{}, func(e *crmsync.Email) string { return e.ConversationID })
	if err != nil {
		return nil, fmt.Errorf("sqlstore: emails by conversation id: %w", err)
	}
	return out, nil
}

// EmailsBySubjectHash returns the emails of any mailbox created at or after since whose
// SubjectHash is one of hashes, by hash, each list ordered by CreatedAt, then ID. Empty
// hashes are ignored, and a hash without emails is missing from the map.
func (s *Store) EmailsBySubjectHash(ctx context.Context, hashes []string, since time.Time) (map[string][]*crmsync.Email, error) {
	out, err := s.emailsByKey(ctx, "subject_hash", hashes, true, since, func(e *crmsync.Email) string { return e.SubjectHash })
	if err != nil {
		return nil, fmt.Errorf("sqlstore: emails by subject hash: %w", err)
	}
	return out, nil
}

// correlationSQL selects the emails whose column col is one of n keys, created at or
// after a bound when bounded (the last argument).
func correlationSQL(col string, n int, bounded bool) string {
	q := "SELECT " + emailCols + " FROM emails WHERE " + col + " IN (" + placeholders(n) + ") AND " + col + " <> ''"
	if bounded {
		q += " AND created_at >= ?"
	}
	return q
}

// emailsByKey runs a lookup by column col: the emails whose key (the column's value) is
// one of keys, created at or after since when bounded.
func (s *Store) emailsByKey(ctx context.Context, col string, keys []string, bounded bool, since time.Time,
	key func(*crmsync.Email) string) (map[string][]*crmsync.Email, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(keys))
	var args []any
	for _, k := range keys {
		if k != "" && !seen[k] {
			seen[k] = true
			args = append(args, k)
		}
	}
	out := make(map[string][]*crmsync.Email)
	// Stored times are whole microseconds: those at or after the first microsecond at
	// or after since are exactly those at or after since.
	bound := since.Truncate(time.Microsecond)
	if bound.Before(since) {
		bound = bound.Add(time.Microsecond)
	}
	for len(args) > 0 {
		n := min(len(args), 1000)
		chunk := args[:n:n] // the bound is appended to a copy, not over the next keys
		args = args[n:]
		if bounded {
			chunk = append(chunk, s.ts(bound))
		}
		es, err := s.selectEmails(ctx, s.rdb, correlationSQL(col, n, bounded), chunk...)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			k := key(e)
			out[k] = append(out[k], e)
		}
	}
	for _, es := range out {
		sortEmails(es)
	}
	return out, nil
}
