package pop3

import "context"

// CursorUIDs returns the UIDLs a cursor holds, for tests.
func CursorUIDs(cur []byte) ([]string, error) { return decodeCursor(cur) }

// EncodeCursor encodes a set of UIDLs as FetchIncoming does, for tests.
func EncodeCursor(uids []string) []byte { return encodeCursor(uids) }

// SessionTLS opens a session as FetchIncoming does, reports whether it runs over TLS,
// and ends it.
func (c *Conn) SessionTLS(ctx context.Context) (bool, error) {
	s, err := c.session(ctx)
	if err != nil {
		return false, err
	}
	defer c.endSession(s, false)
	_, ok := s.cl.TLS()
	return ok, nil
}
