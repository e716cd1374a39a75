package pop3

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// The cursor is the set of UIDLs already looked at: POP3 identifies a message across
// sessions by its UIDL alone, and the maildrop's order says nothing about what is new.
// It is encoded deterministically (one set, one encoding) and compactly:
//
//	version byte 1:  uvarint n, then n entries in strictly increasing byte order, each
//	                 uvarint shared (bytes in common with the previous UIDL),
//	                 uvarint len, and len bytes (the rest of the UIDL);
//	version byte 2:  the same after the version byte, DEFLATE-compressed (level 9);
//	                 used when it is shorter.
//
// Sorted neighbors share most of their prefix (Dovecot's "%08Xu%08Xv" UIDLs share about
// seven of sixteen characters), and the compression takes care of repeated suffixes
// (Dovecot's UIDVALIDITY half), so a cursor costs a few bytes per message.
const (
	cursorFrontCoded byte = 1
	cursorDeflated   byte = 2
)

// maxCursorBody bounds a decompressed cursor, against a crafted one.
const maxCursorBody = 256 << 20

// errCursor is wrapped by the errors of a cursor that cannot be read.
var errCursor = errors.New("unreadable pop3 cursor")

// encodeCursor encodes a set of UIDLs, in any order, duplicates ignored.
func encodeCursor(uids []string) []byte {
	sorted := slices.Clone(uids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)

	body := binary.AppendUvarint(nil, uint64(len(sorted)))
	prev := ""
	for _, u := range sorted {
		shared := commonPrefix(prev, u)
		body = binary.AppendUvarint(body, uint64(shared))
		body = binary.AppendUvarint(body, uint64(len(u)-shared))
		body = append(body, u[shared:]...)
		prev = u
	}
	plain := append([]byte{cursorFrontCoded}, body...)
	if len(plain) < 64 {
		return plain
	}
	var b bytes.Buffer
	b.WriteByte(cursorDeflated)
	w, _ := flate.NewWriter(&b, flate.BestCompression) // a valid level: no error
	w.Write(body)
	w.Close()
	if b.Len() < len(plain) {
		return b.Bytes()
	}
	return plain
}

// decodeCursor returns the UIDLs of a cursor, sorted; an empty cursor is the empty
// set.
func decodeCursor(cur []byte) ([]string, error) {
	if len(cur) == 0 {
		return nil, nil
	}
	body := cur[1:]
	switch cur[0] {
	case cursorFrontCoded:
	case cursorDeflated:
		r := flate.NewReader(bytes.NewReader(body))
		data, err := io.ReadAll(io.LimitReader(r, maxCursorBody+1))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errCursor, err)
		}
		if len(data) > maxCursorBody {
			return nil, fmt.Errorf("%w: larger than %d bytes", errCursor, maxCursorBody)
		}
		body = data
	default:
		return nil, fmt.Errorf("%w: unknown version %d", errCursor, cur[0])
	}
	return decodeFrontCoded(body)
}

func decodeFrontCoded(body []byte) ([]string, error) {
	n, k := binary.Uvarint(body)
	if k <= 0 {
		return nil, fmt.Errorf("%w: bad count", errCursor)
	}
	body = body[k:]
	if n > uint64(len(body))/2 { // each entry takes at least two bytes
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errCursor, n, len(body))
	}
	out := make([]string, 0, n)
	prev := ""
	for i := range n {
		shared, k1 := binary.Uvarint(body)
		if k1 <= 0 {
			return nil, fmt.Errorf("%w: entry %d", errCursor, i)
		}
		rest, k2 := binary.Uvarint(body[k1:])
		if k2 <= 0 || shared > uint64(len(prev)) || rest > uint64(len(body)-k1-k2) {
			return nil, fmt.Errorf("%w: entry %d", errCursor, i)
		}
		start := k1 + k2
		u := prev[:shared] + string(body[start:start+int(rest)])
		if i > 0 && u <= prev {
			return nil, fmt.Errorf("%w: entries out of order", errCursor)
		}
		out = append(out, u)
		prev = u
		body = body[start+int(rest):]
	}
	if len(body) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", errCursor, len(body))
	}
	return out, nil
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
