package providertest

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

// mailbox is one mailbox of the fake server. mu guards everything but addr and
// fails.pending.
//
// Every message and every item change takes the next number of seq, the mailbox's
// arrival counter; cursors hold the epoch and the last number they cover. Stored
// messages are never changed once stored (only their gone flag), so copies can be made
// outside the lock.
type mailbox struct {
	addr string

	mu           sync.Mutex
	password     string
	epoch        uint64
	seq          uint64
	msgs         []*message          // in seq order; moved messages stay as gone
	byID         map[string]*message // live messages by ProviderID
	sent         map[string]int      // Message-ID → live copies in SentFolder
	items        [3]itemSet          // by crmsync.ItemKind - 1
	unknownSends int
	fails        failures
}

// message is one stored message.
type message struct {
	seq     uint64
	email   *crmsync.Email // with ProviderID, Folder and ReceivedAt set; never changed
	gone    bool           // moved away: a new message holds it now
	bodyErr error          // FailBody: the body cannot be read
}

func newMailbox(addr string) *mailbox {
	return &mailbox{addr: addr, byID: make(map[string]*message), sent: make(map[string]int)}
}

// addLocked stores e, which the mailbox now owns, in folder. mb.mu is held.
func (mb *mailbox) addLocked(e *crmsync.Email, folder string) *message {
	mb.seq++
	e.Folder = folder
	if e.ProviderID == "" {
		e.ProviderID = "m" + strconv.FormatUint(mb.seq, 10)
	}
	m := &message{seq: mb.seq, email: e}
	mb.msgs = append(mb.msgs, m)
	mb.byID[e.ProviderID] = m
	if folder == SentFolder && e.MessageID != "" {
		mb.sent[e.MessageID]++
	}
	return m
}

// moveLocked moves the live message id to folder. As on IMAP and Graph the moved
// message has a new identity, and it counts as a new arrival in its new folder. A move
// to the folder the message is in does nothing. mb.mu is held.
func (mb *mailbox) moveLocked(id, folder string) (*message, bool) {
	m := mb.byID[id]
	if m == nil {
		return nil, false
	}
	if m.email.Folder == folder {
		return m, true
	}
	m.gone = true
	delete(mb.byID, id)
	if m.email.Folder == SentFolder && m.email.MessageID != "" {
		if mb.sent[m.email.MessageID]--; mb.sent[m.email.MessageID] <= 0 {
			delete(mb.sent, m.email.MessageID)
		}
	}
	c := *m.email // the slices stay shared: stored messages are never changed
	c.ProviderID = ""
	n := mb.addLocked(&c, folder)
	n.bodyErr = m.bodyErr
	return n, true
}

// position returns the sequence number a cursor of this tag covers: 0 for a nil
// cursor, an expired-cursor error for a cursor of another epoch or one that does not
// parse. mb.mu is held.
func (mb *mailbox) position(op string, cursor []byte, tag byte) (uint64, error) {
	if cursor == nil {
		return 0, nil
	}
	epoch, seq, ok := parseCursor(cursor, tag)
	if !ok || epoch != mb.epoch || seq > mb.seq {
		return 0, provider.CursorExpired(op, fmt.Errorf("mailbox %s: the cursor is no longer valid", mb.addr))
	}
	return seq, nil
}

// firstAfter returns the index of the first message after seq.
func (mb *mailbox) firstAfter(seq uint64) int {
	return sort.Search(len(mb.msgs), func(i int) bool { return mb.msgs[i].seq > seq })
}

// Cursors are opaque to the engine: a version byte, a tag saying what they are for (mail,
// or one item kind), then the mailbox's epoch and the last sequence number covered.
const cursorVersion = 1

const tagMail byte = 'm'

func tagItems(k crmsync.ItemKind) byte { return 'i' + byte(k) }

func appendCursor(tag byte, epoch, seq uint64) []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64)
	b = append(b, cursorVersion, tag)
	b = binary.AppendUvarint(b, epoch)
	return binary.AppendUvarint(b, seq)
}

func parseCursor(b []byte, tag byte) (epoch, seq uint64, ok bool) {
	if len(b) < 4 || b[0] != cursorVersion || b[1] != tag {
		return 0, 0, false
	}
	b = b[2:]
	epoch, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, false
	}
	seq, m := binary.Uvarint(b[n:])
	if m <= 0 || n+m != len(b) {
		return 0, 0, false
	}
	return epoch, seq, true
}
