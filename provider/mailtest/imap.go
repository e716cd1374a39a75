package mailtest

import (
	"crypto/tls"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

func (s *Server) newIMAPServer() *imapserver.Server {
	opts := &imapserver.Options{
		NewSession:   s.newIMAPSession,
		Caps:         s.imapCaps(),
		Logger:       logAdapter{log: s.log, server: "imap"},
		InsecureAuth: s.cfg.TLS == NoTLS,
	}
	if s.cfg.TLS == StartTLS {
		opts.TLSConfig = s.tlsCert
	}
	return imapserver.New(opts)
}

func (s *Server) newIMAPSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	nc := c.NetConn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	tc, _ := nc.(*trackedConn)
	return &imapSession{srv: s, conn: tc}, nil, nil
}

// imapSession is one IMAP connection's session: imapmemserver's UserSession once
// logged in, with every command counted in the server's Stats.
type imapSession struct {
	*imapmemserver.UserSession // nil until Login

	srv      *Server
	mem      *imapmemserver.User // after Login
	conn     *trackedConn        // nil only if the listener was bypassed
	internal bool                // a session the server opened on itself; not counted
}

var (
	_ imapserver.SessionIMAP4rev2 = (*imapSession)(nil)
)

func (sess *imapSession) count(name string) {
	if sess.internal {
		return
	}
	sess.srv.count(func(st *Stats) { st.IMAPCommands[name]++ })
}

// Close ends the session and marks the connection so that its last close releases the
// server's wait for it.
func (sess *imapSession) Close() error {
	err := sess.UserSession.Close() // nil-safe
	if sess.conn != nil {
		sess.conn.endSession()
	}
	return err
}

// Login checks the address and password against the server's users.
func (sess *imapSession) Login(username, password string) error {
	u := sess.srv.lookup(username)
	if u == nil {
		sess.count("LOGIN")
		return imapserver.ErrAuthFailed
	}
	if password == sess.srv.internal {
		sess.internal = true
	} else {
		sess.count("LOGIN")
		if err := u.mem.Login(u.address, password); err != nil {
			return err
		}
		sess.srv.count(func(st *Stats) { st.IMAPLogins++ })
	}
	sess.mem = u.mem
	sess.UserSession = imapmemserver.NewUserSession(u.mem)
	return nil
}

// Select counts SELECT or EXAMINE.
func (sess *imapSession) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if options != nil && options.ReadOnly {
		sess.count("EXAMINE")
	} else {
		sess.count("SELECT")
	}
	return sess.UserSession.Select(mailbox, options)
}

// Create counts CREATE.
func (sess *imapSession) Create(mailbox string, options *imap.CreateOptions) error {
	sess.count("CREATE")
	return sess.UserSession.Create(mailbox, options)
}

// Delete counts DELETE.
func (sess *imapSession) Delete(mailbox string) error {
	sess.count("DELETE")
	return sess.UserSession.Delete(mailbox)
}

// Rename counts RENAME.
func (sess *imapSession) Rename(mailbox, newName string, options *imap.RenameOptions) error {
	sess.count("RENAME")
	return sess.UserSession.Rename(mailbox, newName, options)
}

// Subscribe counts SUBSCRIBE.
func (sess *imapSession) Subscribe(mailbox string) error {
	sess.count("SUBSCRIBE")
	return sess.UserSession.Subscribe(mailbox)
}

// Unsubscribe counts UNSUBSCRIBE.
func (sess *imapSession) Unsubscribe(mailbox string) error {
	sess.count("UNSUBSCRIBE")
	return sess.UserSession.Unsubscribe(mailbox)
}

// List counts LIST.
func (sess *imapSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	sess.count("LIST")
	return sess.UserSession.List(w, ref, patterns, options)
}

// Status counts STATUS.
func (sess *imapSession) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	sess.count("STATUS")
	return sess.UserSession.Status(mailbox, options)
}

// Append counts APPEND.
func (sess *imapSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	sess.count("APPEND")
	return sess.UserSession.Append(mailbox, r, options)
}

// Unselect counts UNSELECT (and CLOSE).
func (sess *imapSession) Unselect() error {
	sess.count("UNSELECT")
	return sess.UserSession.Unselect()
}

// Expunge counts EXPUNGE.
func (sess *imapSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sess.count("EXPUNGE")
	return sess.UserSession.Expunge(w, uids)
}

// Search counts SEARCH.
func (sess *imapSession) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sess.count("SEARCH")
	return sess.UserSession.Search(kind, criteria, options)
}

// Fetch counts FETCH and, when full bodies are asked for, the messages fetched.
func (sess *imapSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sess.count("FETCH")
	if !sess.internal && fetchesBody(options) {
		n := 1
		switch set := numSet.(type) {
		case imap.UIDSet:
			if nums, ok := set.Nums(); ok {
				n = len(nums)
			}
		case imap.SeqSet:
			if nums, ok := set.Nums(); ok {
				n = len(nums)
			}
		}
		sess.srv.count(func(st *Stats) { st.BodyFetches += n })
	}
	return sess.UserSession.Fetch(w, numSet, options)
}

func fetchesBody(options *imap.FetchOptions) bool {
	if len(options.BinarySection) > 0 {
		return true
	}
	for _, bs := range options.BodySection {
		if bs.Specifier == imap.PartSpecifierNone || bs.Specifier == imap.PartSpecifierText {
			return true
		}
	}
	return false
}

// Store counts STORE.
func (sess *imapSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	sess.count("STORE")
	return sess.UserSession.Store(w, numSet, flags, options)
}

// Copy counts COPY. Copying no message answers a plain OK, as Dovecot does:
// imapmemserver would send a COPYUID with empty sets, which clients cannot parse.
func (sess *imapSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	sess.count("COPY")
	if !sess.matchesAny(numSet) {
		if _, err := sess.user().Status(dest, &imap.StatusOptions{}); err != nil {
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
		}
		return nil, nil
	}
	return sess.UserSession.Copy(numSet, dest)
}

// Move counts MOVE. Moving no message answers a plain OK (see Copy).
func (sess *imapSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	sess.count("MOVE")
	if !sess.matchesAny(numSet) {
		if _, err := sess.user().Status(dest, &imap.StatusOptions{}); err != nil {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
		}
		return nil
	}
	return sess.UserSession.Move(w, numSet, dest)
}

// matchesAny reports whether numSet names a message of the selected mailbox.
func (sess *imapSession) matchesAny(numSet imap.NumSet) bool {
	var criteria imap.SearchCriteria
	switch set := numSet.(type) {
	case imap.UIDSet:
		criteria.UID = []imap.UIDSet{set}
	case imap.SeqSet:
		criteria.SeqNum = []imap.SeqSet{set}
	default:
		return true
	}
	data, err := sess.UserSession.Search(imapserver.NumKindUID, &criteria, &imap.SearchOptions{})
	return err != nil || data.Count > 0
}

// user returns the logged-in user's backend.
func (sess *imapSession) user() *imapmemserver.User { return sess.mem }

// Namespace counts NAMESPACE.
func (sess *imapSession) Namespace() (*imap.NamespaceData, error) {
	sess.count("NAMESPACE")
	return sess.UserSession.Namespace()
}

func (s *Server) lookup(address string) *user {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[strings.ToLower(strings.TrimSpace(address))]
}
