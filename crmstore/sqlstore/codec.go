package sqlstore

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/crmsync/crmsync"
)

// How values travel between Go and the database.
//
// Times: PostgreSQL keeps them as timestamptz, SQLite as integer microseconds since the
// Unix epoch (the dialect's timeArg converts); both keep microseconds, and a zero time
// is stored as such (year 1) where the column is NOT NULL, or as NULL in the schedule's
// columns, where NULL means "none". Scanned times are in UTC.
//
// Lists (addresses, references, notes, parties, tracked folders, recipients) and ACT items are
// JSON: NULL for an empty list, which comes back as nil.

// dbTime scans a time column of either dialect; NULL leaves Valid false.
type dbTime struct {
	T     time.Time
	Valid bool
}

// Scan implements sql.Scanner.
func (x *dbTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*x = dbTime{}
	case int64:
		*x = dbTime{T: time.UnixMicro(v).UTC(), Valid: true}
	case time.Time:
		*x = dbTime{T: v.UTC(), Valid: true}
	default:
		return fmt.Errorf("sqlstore: cannot scan %T into a time", v)
	}
	return nil
}

// time returns the time, zero for NULL.
func (x dbTime) time() time.Time {
	if !x.Valid {
		return time.Time{}
	}
	return x.T
}

// nullTime is the argument of a nullable time column: NULL for the zero time.
func (s *Store) nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return s.d.timeArg(t)
}

// ts is the argument of a NOT NULL time column.
func (s *Store) ts(t time.Time) any { return s.d.timeArg(t) }

func sqliteTime(t time.Time) any { return t.UnixMicro() }

func postgresTime(t time.Time) any { return t.UTC().Truncate(time.Microsecond) }

// jsonList returns the JSON of a list, or nil (NULL) when it is empty.
func jsonList[T any](xs []T) (any, error) {
	if len(xs) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(xs)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// unjsonList decodes a list stored by jsonList; NULL or an empty list gives nil.
func unjsonList[T any](b []byte) ([]T, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var xs []T
	if err := json.Unmarshal(b, &xs); err != nil {
		return nil, err
	}
	if len(xs) == 0 {
		return nil, nil
	}
	return xs, nil
}

// address is the stored form of a crmsync.Address: the JSON names are the schema's,
// not the Go field names.
type address struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email"`
}

func addressesArg(as []crmsync.Address) (any, error) {
	if len(as) == 0 {
		return nil, nil
	}
	out := make([]address, len(as))
	for i, a := range as {
		out[i] = address(a)
	}
	return jsonList(out)
}

func scanAddresses(b []byte) ([]crmsync.Address, error) {
	as, err := unjsonList[address](b)
	if as == nil || err != nil {
		return nil, err
	}
	out := make([]crmsync.Address, len(as))
	for i, a := range as {
		out[i] = crmsync.Address(a)
	}
	return out, nil
}

// party is the stored form of a crmsync.Party: the role's code, the address, and the
// record, whose kind and ID are missing when the address stayed unresolved.
type party struct {
	Role  crmsync.PartyRole `json:"role"`
	Name  string            `json:"name,omitempty"`
	Email string            `json:"email"`
	Kind  string            `json:"kind,omitempty"`
	ID    string            `json:"id,omitempty"`
}

func partiesArg(ps []crmsync.Party) (any, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	out := make([]party, len(ps))
	for i, p := range ps {
		out[i] = party{Role: p.Role, Name: p.Address.Name, Email: p.Address.Email, Kind: p.RecordKind, ID: p.RecordID}
	}
	return jsonList(out)
}

func scanParties(b []byte) ([]crmsync.Party, error) {
	ps, err := unjsonList[party](b)
	if ps == nil || err != nil {
		return nil, err
	}
	out := make([]crmsync.Party, len(ps))
	for i, p := range ps {
		out[i] = crmsync.Party{Role: p.Role, Address: crmsync.Address{Name: p.Name, Email: p.Email}, RecordKind: p.Kind, RecordID: p.ID}
	}
	return out, nil
}

// owner is the stored form of a crmsync.Owner.
type owner struct {
	Kind crmsync.OwnerKind `json:"kind"`
	ID   string            `json:"id"`
}

// blob returns b as the argument of a nullable binary column: NULL for nil, so that an
// empty cursor stays apart from none.
func blob(b []byte) any {
	if b == nil {
		return nil
	}
	if len(b) == 0 {
		return []byte{}
	}
	return b
}

// idGen makes the IDs the store assigns: a prefix and 26 characters of Crockford
// base32 over 48 bits of milliseconds and 80 random bits, like a ULID. IDs made later
// sort after earlier ones (one process keeps them strictly increasing), and several
// processes on one database need no coordination to keep them unique.
type idGen struct {
	mu   sync.Mutex
	last uint64 // milliseconds of the last ID
	hi   uint16 // the random bits of the last ID
	lo   uint64
}

const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

func (g *idGen) next(prefix string, now time.Time) string {
	ms := uint64(now.UnixMilli())
	g.mu.Lock()
	if ms <= g.last {
		// Same (or an earlier) millisecond: count up from the last ID.
		ms = g.last
		g.lo++
		if g.lo == 0 {
			g.hi++
		}
	} else {
		var r [10]byte
		_, _ = rand.Read(r[:])
		g.hi = binary.BigEndian.Uint16(r[:2])
		g.lo = binary.BigEndian.Uint64(r[2:]) >> 1 // room to count up
		g.last = ms
	}
	hi, lo := g.hi, g.lo
	g.mu.Unlock()

	// 128 bits: ms (48) | hi (16) | lo (64), written as 26 base32 digits (130 bits).
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], ms<<16|uint64(hi))
	binary.BigEndian.PutUint64(b[8:16], lo)
	out := make([]byte, len(prefix)+26)
	copy(out, prefix)
	digits := out[len(prefix):]
	// Take 5 bits at a time from the most significant end, with 2 leading zero bits.
	var acc uint64
	bits := 2 // two zero bits make 130
	i := 0
	for _, c := range b {
		acc = acc<<8 | uint64(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			digits[i] = crockford[(acc>>uint(bits))&31]
			i++
		}
	}
	return string(out)
}
