package mailtest

import (
	"bytes"
	"fmt"
	"net/mail"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// AddUser creates a user whose IMAP and SMTP user name is address (compared
// case-insensitively) with the given password, and the mailboxes INBOX, Sent, Drafts,
// Junk and Trash. imapmemserver cannot mark a mailbox with a SPECIAL-USE attribute, so
// Sent is found by its name only. Adding an address twice is an error.
func (s *Server) AddUser(address, password string) error {
	a, err := mail.ParseAddress(address)
	if err != nil || a.Address != strings.TrimSpace(address) {
		return fmt.Errorf("mailtest: AddUser: %q is not a bare email address", address)
	}
	key := strings.ToLower(a.Address)
	u := &user{address: key, password: password, mem: imapmemserver.NewUser(key, password)}
	for _, name := range []string{Inbox, Sent, Drafts, Junk, Trash} {
		if err := u.mem.Create(name, nil); err != nil {
			return fmt.Errorf("mailtest: AddUser %s: create %s: %w", key, name, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[key]; ok {
		return fmt.Errorf("mailtest: AddUser: user %s exists", key)
	}
	s.users[key] = u
	return nil
}

// Deliver puts raw into the INBOX of the user with this address, dated (INTERNALDATE)
// by the server's clock. Like a delivery agent writing to a maildir, it drops a leading
// mbox "From " envelope line; the rest is stored as it is. (imapmemserver serves no
// header or body for a message whose header it cannot parse, so a message with other
// malformed header lines reads back empty.)
func (s *Server) Deliver(address string, raw []byte) error {
	return s.DeliverAt(address, raw, s.cfg.Clock.Now())
}

// DeliverAt is Deliver with INTERNALDATE received.
func (s *Server) DeliverAt(address string, raw []byte, received time.Time) error {
	return s.AppendAt(address, Inbox, stripEnvelopeLine(raw), received)
}

// stripEnvelopeLine drops an mbox "From sender date" line ("From " not followed by a
// colon, which would make it a From field).
func stripEnvelopeLine(raw []byte) []byte {
	rest, ok := bytes.CutPrefix(raw, []byte("From "))
	if !ok || bytes.HasPrefix(bytes.TrimLeft(rest, " \t"), []byte(":")) {
		return raw
	}
	if i := bytes.IndexByte(raw, '\n'); i >= 0 {
		return raw[i+1:]
	}
	return raw
}

// AppendAt appends raw, as it is (as IMAP APPEND does), to a mailbox of the user with this address, with
// INTERNALDATE received and no flags.
func (s *Server) AppendAt(address, mailbox string, raw []byte, received time.Time) error {
	u := s.lookup(address)
	if u == nil {
		return fmt.Errorf("mailtest: no user %s", address)
	}
	_, err := u.mem.Append(mailbox, literal{bytes.NewReader(raw)}, &imap.AppendOptions{Time: received})
	if err != nil {
		return fmt.Errorf("mailtest: append to %s of %s: %w", mailbox, address, err)
	}
	return nil
}

// CreateMailbox creates a mailbox for the user with this address. A mailbox deleted
// and created again gets a new UIDVALIDITY, as RFC 9051 requires.
func (s *Server) CreateMailbox(address, mailbox string) error {
	u := s.lookup(address)
	if u == nil {
		return fmt.Errorf("mailtest: no user %s", address)
	}
	return u.mem.Create(mailbox, nil)
}

// DeleteMailbox deletes a mailbox of the user with this address, with its messages.
func (s *Server) DeleteMailbox(address, mailbox string) error {
	u := s.lookup(address)
	if u == nil {
		return fmt.Errorf("mailtest: no user %s", address)
	}
	return u.mem.Delete(mailbox)
}

// UIDValidity returns a mailbox's UIDVALIDITY.
func (s *Server) UIDValidity(address, mailbox string) (uint32, error) {
	u := s.lookup(address)
	if u == nil {
		return 0, fmt.Errorf("mailtest: no user %s", address)
	}
	st, err := u.mem.Status(mailbox, &imap.StatusOptions{UIDValidity: true})
	if err != nil {
		return 0, err
	}
	return st.UIDValidity, nil
}

// Message is a message as a mailbox holds it.
type Message struct {
	UID          uint32
	Flags        []string
	InternalDate time.Time
	Raw          []byte
}

// Messages returns the messages of a user's mailbox in UID order, read over IMAP on a
// session that Stats does not count. The server must be started.
func (s *Server) Messages(address, mailbox string) ([]Message, error) {
	u := s.lookup(address)
	if u == nil {
		return nil, fmt.Errorf("mailtest: no user %s", address)
	}
	var opts imapclient.Options
	var c *imapclient.Client
	var err error
	if s.cfg.TLS == ImplicitTLS {
		opts.TLSConfig = s.clientTLS()
		c, err = imapclient.DialTLS(s.IMAPAddr(), &opts)
	} else if s.cfg.TLS == StartTLS {
		opts.TLSConfig = s.clientTLS()
		c, err = imapclient.DialStartTLS(s.IMAPAddr(), &opts)
	} else {
		c, err = imapclient.DialInsecure(s.IMAPAddr(), &opts)
	}
	if err != nil {
		return nil, fmt.Errorf("mailtest: messages: %w", err)
	}
	defer c.Close()
	if err := c.Login(u.address, s.internal).Wait(); err != nil {
		return nil, fmt.Errorf("mailtest: messages: login: %w", err)
	}
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("mailtest: messages: select %s: %w", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return nil, nil
	}
	body := &imap.FetchItemBodySection{Peek: true}
	var all imap.SeqSet
	all.AddRange(1, sel.NumMessages)
	bufs, err := c.Fetch(all, &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{body},
	}).Collect()
	if err != nil {
		return nil, fmt.Errorf("mailtest: messages: fetch: %w", err)
	}
	sort.Slice(bufs, func(i, j int) bool { return bufs[i].UID < bufs[j].UID })
	out := make([]Message, 0, len(bufs))
	for _, b := range bufs {
		m := Message{UID: uint32(b.UID), InternalDate: b.InternalDate, Raw: b.FindBodySection(body)}
		for _, f := range b.Flags {
			m.Flags = append(m.Flags, string(f))
		}
		out = append(out, m)
	}
	_ = c.Logout().Wait()
	return out, nil
}

// literal is the imap.LiteralReader that imapmemserver's Append reads.
type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }
