package filter

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// ThreadIndex is Outlook's Thread-Index header (MAPI PidTagConversationIndex), decoded.
// Its 22-byte header block holds the upper 48 bits of a FILETIME (the thread's start;
// MS-OXOMSG names the first byte "reserved", and it is the FILETIME's top byte, 0x01 for
// any date since 1601+) and the conversation GUID; each reply adds a 5-byte child block
// with a time delta. Every message of one conversation carries the same GUID: that is
// what correlation matches.
type ThreadIndex struct {
	// Start is the time in the header block (to a resolution of 6.5 ms).
	Start time.Time
	// GUID identifies the conversation.
	GUID     [16]byte
	Children []ThreadChild
}

// ThreadChild is one reply's block of a Thread-Index.
type ThreadChild struct {
	// Delta is the time since the previous block (to the block's resolution).
	Delta time.Duration
	// Random and Sequence are the block's 4-bit random number and sequence count.
	Random, Sequence uint8
}

// ErrThreadIndex is returned (wrapped) for a Thread-Index that does not decode.
var ErrThreadIndex = errors.New("filter: invalid Thread-Index")

const (
	threadHeaderLen = 22
	threadChildLen  = 5
	// filetimeEpochSeconds is 1601-01-01 to 1970-01-01 in seconds.
	filetimeEpochSeconds = 11644473600
	// maxThreadIndexLen bounds what DecodeThreadIndex accepts (Outlook stops growing
	// it long before; the header is ~30 characters, each reply adds ~7).
	maxThreadIndexLen = 4096
)

// DecodeThreadIndex decodes a Thread-Index header value: base64 (padding optional,
// spaces ignored) of 22 bytes plus 5 per reply.
func DecodeThreadIndex(s string) (ThreadIndex, error) {
	raw, err := threadIndexBytes(s)
	if err != nil {
		return ThreadIndex{}, err
	}
	var ti ThreadIndex
	ft := uint64(raw[0])<<56 | uint64(raw[1])<<48 | uint64(raw[2])<<40 | uint64(raw[3])<<32 |
		uint64(raw[4])<<24 | uint64(raw[5])<<16
	ti.Start = filetimeToTime(ft)
	copy(ti.GUID[:], raw[6:threadHeaderLen])
	for b := raw[threadHeaderLen:]; len(b) >= threadChildLen; b = b[threadChildLen:] {
		v := binary.BigEndian.Uint32(b[:4])
		shift := 18
		if v&0x80000000 != 0 {
			shift = 23
		}
		units := uint64(v&0x7fffffff) << shift
		ti.Children = append(ti.Children, ThreadChild{
			Delta:    time.Duration(units) * 100,
			Random:   b[4] >> 4,
			Sequence: b[4] & 0x0f,
		})
	}
	return ti, nil
}

// ConversationID returns the conversation GUID of a Thread-Index header value as 32
// lower-case hex digits: the key correlation matches on.
func ConversationID(threadIndex string) (string, error) {
	raw, err := threadIndexBytes(threadIndex)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(raw[6:threadHeaderLen]), nil
}

// ConversationID returns the conversation GUID as 32 lower-case hex digits.
func (t ThreadIndex) ConversationID() string { return hex.EncodeToString(t.GUID[:]) }

// String encodes t as a Thread-Index header value (standard base64). Child deltas are
// encoded with the finest resolution that holds them.
func (t ThreadIndex) String() string {
	raw := make([]byte, threadHeaderLen, threadHeaderLen+threadChildLen*len(t.Children))
	ft := timeToFiletime(t.Start)
	for i := range 6 {
		raw[i] = byte(ft >> (56 - 8*i))
	}
	copy(raw[6:], t.GUID[:])
	for _, c := range t.Children {
		units := uint64(max(c.Delta, 0) / 100)
		v := uint32(units>>18) & 0x7fffffff
		if units>>18 > 0x7fffffff {
			v = 0x80000000 | uint32(min(units>>23, 0x7fffffff))
		}
		raw = binary.BigEndian.AppendUint32(raw, v)
		raw = append(raw, c.Random<<4|c.Sequence&0x0f)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// IsAncestorOf reports whether the Thread-Index parent is a strict prefix of child
// (both as header values): child answers parent or one of its replies.
func IsAncestorOf(parent, child string) bool {
	p, err := threadIndexBytes(parent)
	if err != nil {
		return false
	}
	c, err := threadIndexBytes(child)
	if err != nil {
		return false
	}
	return len(p) < len(c) && bytes.Equal(c[:len(p)], p)
}

// NewThreadIndex returns a Thread-Index header value that starts a new conversation at
// now, with a random GUID. Stamping it on outgoing CRM email lets replies from Outlook,
// which keep the GUID, correlate by conversation.
func NewThreadIndex(now time.Time) string {
	var t ThreadIndex
	t.Start = now
	_, _ = rand.Read(t.GUID[:]) // crypto/rand.Read never fails
	return t.String()
}

func threadIndexBytes(s string) ([]byte, error) {
	if len(s) > maxThreadIndexLen {
		return nil, errors.Join(ErrThreadIndex, errors.New("too long"))
	}
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
	s = strings.TrimRight(s, "=")
	raw, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.Join(ErrThreadIndex, err)
	}
	if len(raw) < threadHeaderLen || (len(raw)-threadHeaderLen)%threadChildLen != 0 {
		return nil, errors.Join(ErrThreadIndex, errors.New("length is not 22 + 5n bytes"))
	}
	return raw, nil
}

func filetimeToTime(ft uint64) time.Time {
	// Seconds and 100 ns units apart: int64 nanoseconds would overflow after 2262.
	return time.Unix(int64(ft/1e7)-filetimeEpochSeconds, int64(ft%1e7)*100).UTC()
}

// timeToFiletime is exact for times from 1601 to the year 30828; others wrap.
func timeToFiletime(t time.Time) uint64 {
	return uint64(t.Unix()+filetimeEpochSeconds)*1e7 + uint64(t.Nanosecond()/100)
}
