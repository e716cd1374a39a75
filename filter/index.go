package filter

import (
	"context"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
)

// EmailIndex finds tracked CRM emails (incoming and outgoing, of any mailbox) by
// Message-ID: the one lookup correlation and duplicate detection need. A
// crmstore.Store satisfies it. A store that can do more implements the optional
// TokenIndex, ConversationIndex and SubjectIndex too; correlation finds them by type
// assertion and skips a method whose lookup is missing.
type EmailIndex interface {
	// EmailsByMessageID returns the emails whose MessageID is one of ids.
	EmailsByMessageID(ctx context.Context, ids []string) ([]*crmsync.Email, error)
}

// TokenIndex finds emails by the tracking token in their subject (in the canonical
// form TokenConfig.Find returns). The result maps each token asked to its emails;
// tokens without emails may be missing.
type TokenIndex interface {
	EmailsByTrackingToken(ctx context.Context, tokens []string) (map[string][]*crmsync.Email, error)
}

// ConversationIndex finds emails by the conversation GUID of their Thread-Index (see
// ConversationID). The result maps each id asked to its emails.
type ConversationIndex interface {
	EmailsByConversationID(ctx context.Context, ids []string) (map[string][]*crmsync.Email, error)
}

// SubjectIndex finds emails for smart matching by subject hash (see
// SubjectNormalizer.SubjectHash), created at or after since. The result maps each hash
// asked to its emails. The recipient hashes are computed from the emails returned, so
// a store keeps only the subject hash.
type SubjectIndex interface {
	EmailsBySubjectHash(ctx context.Context, hashes []string, since time.Time) (map[string][]*crmsync.Email, error)
}

// MemIndex is an in-memory EmailIndex with all the optional lookups: for tests and
// small hosts. Add computes and keeps each email's keys. It is safe for concurrent use.
// Lookups return copies.
type MemIndex struct {
	token TokenConfig
	norm  *SubjectNormalizer

	mu        sync.RWMutex
	n         int
	byID      map[string][]*crmsync.Email
	byToken   map[string][]*crmsync.Email
	byConv    map[string][]*crmsync.Email
	bySubject map[string][]*crmsync.Email
}

// NewMemIndex returns an empty index that computes keys as a correlator with the same
// configuration looks them up.
func NewMemIndex(cfg CorrelationConfig) (*MemIndex, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &MemIndex{
		token:     cfg.Token,
		norm:      NewSubjectNormalizer(cfg.SubjectPrefixes, cfg.Token),
		byID:      make(map[string][]*crmsync.Email),
		byToken:   make(map[string][]*crmsync.Email),
		byConv:    make(map[string][]*crmsync.Email),
		bySubject: make(map[string][]*crmsync.Email),
	}, nil
}

// Add indexes a copy of e: by MessageID, by the tracking token in its subject, by the
// conversation of its Thread-Index and by its subject hash.
func (x *MemIndex) Add(e *crmsync.Email) {
	c := e.Clone()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.n++
	if c.MessageID != "" {
		x.byID[c.MessageID] = append(x.byID[c.MessageID], c)
	}
	if tok, ok := x.token.Find(c.Subject); ok {
		x.byToken[tok] = append(x.byToken[tok], c)
	}
	if c.ThreadIndex != "" {
		if id, err := ConversationID(c.ThreadIndex); err == nil {
			x.byConv[id] = append(x.byConv[id], c)
		}
	}
	if h := x.norm.SubjectHash(c.Subject); h != "" {
		x.bySubject[h] = append(x.bySubject[h], c)
	}
}

// Len returns the number of emails added.
func (x *MemIndex) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}

// EmailsByMessageID implements EmailIndex.
func (x *MemIndex) EmailsByMessageID(_ context.Context, ids []string) ([]*crmsync.Email, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []*crmsync.Email
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		for _, e := range x.byID[id] {
			out = append(out, e.Clone())
		}
	}
	return out, nil
}

// EmailsByTrackingToken implements TokenIndex.
func (x *MemIndex) EmailsByTrackingToken(_ context.Context, tokens []string) (map[string][]*crmsync.Email, error) {
	return x.lookup(x.byToken, tokens, time.Time{}), nil
}

// EmailsByConversationID implements ConversationIndex.
func (x *MemIndex) EmailsByConversationID(_ context.Context, ids []string) (map[string][]*crmsync.Email, error) {
	return x.lookup(x.byConv, ids, time.Time{}), nil
}

// EmailsBySubjectHash implements SubjectIndex.
func (x *MemIndex) EmailsBySubjectHash(_ context.Context, hashes []string, since time.Time) (map[string][]*crmsync.Email, error) {
	return x.lookup(x.bySubject, hashes, since), nil
}

func (x *MemIndex) lookup(m map[string][]*crmsync.Email, keys []string, since time.Time) map[string][]*crmsync.Email {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[string][]*crmsync.Email)
	for _, k := range keys {
		if _, done := out[k]; done {
			continue
		}
		var es []*crmsync.Email
		for _, e := range m[k] {
			if since.IsZero() || !emailTime(e).Before(since) {
				es = append(es, e.Clone())
			}
		}
		if len(es) > 0 {
			out[k] = es
		}
	}
	return out
}

// emailTime is when an email entered the CRM, for the smart-matching window.
func emailTime(e *crmsync.Email) time.Time {
	switch {
	case !e.CreatedAt.IsZero():
		return e.CreatedAt
	case !e.SentAt.IsZero():
		return e.SentAt
	}
	return e.ReceivedAt
}
