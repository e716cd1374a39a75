package imap

import (
	"encoding/json"
	"errors"
	"fmt"
)

// cursorVersion is the version of the cursor encoding.
const cursorVersion = 1

// cursor is the position of an incoming cycle, per folder. It is opaque to the engine:
// a small JSON object, so that it is readable when debugging.
type cursor struct {
	Version int                     `json:"v"`
	Folders map[string]*folderState `json:"f"`
}

// folderState is one folder's position.
type folderState struct {
	// Validity is the folder's UIDVALIDITY; UIDs below are meaningful only with it.
	Validity uint32 `json:"uv"`
	// Last is the highest UID looked at: every message up to it was returned, screened
	// out, or left out as received before the request's Since date.
	Last uint32 `json:"last"`
	// Next is the UIDNEXT seen when the folder was last read to its end, 0 while
	// messages remain. A folder whose UIDVALIDITY and UIDNEXT still match is unchanged.
	Next uint32 `json:"next,omitempty"`
	// ModSeq is the HIGHESTMODSEQ seen with Next, on servers with CONDSTORE. It is kept
	// for the record: a flag change raises it but brings no new message, so the skip
	// decision rests on UIDNEXT.
	ModSeq uint64 `json:"modseq,omitempty"`
}

// decodeCursor reads a cursor; nil or empty means the first cycle.
func decodeCursor(b []byte) (*cursor, error) {
	c := &cursor{Version: cursorVersion, Folders: make(map[string]*folderState)}
	if len(b) == 0 {
		return c, nil
	}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("unreadable cursor: %w", err)
	}
	if c.Version != cursorVersion {
		return nil, fmt.Errorf("cursor version %d is not %d", c.Version, cursorVersion)
	}
	if c.Folders == nil {
		c.Folders = make(map[string]*folderState)
	}
	for name, st := range c.Folders {
		if st == nil {
			return nil, errors.New("cursor has an empty folder entry for " + name)
		}
	}
	return c, nil
}

// encode returns the cursor's bytes.
func (c *cursor) encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // a struct of numbers and strings always marshals
	}
	return b
}
