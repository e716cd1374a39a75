package providertest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/schedule"
)

// Op names a provider call of the fake server, for error injection, the OnCall hook and
// the call counters.
type Op string

// The fake's provider calls.
const (
	OpDial     Op = "dial"      // Server.Dial
	OpTest     Op = "test"      // Conn.Test, any workload
	OpFetch    Op = "fetch"     // Conn.FetchIncoming
	OpSend     Op = "send"      // Conn.Send
	OpFindSent Op = "find-sent" // Conn.FindSent
	OpChanges  Op = "changes"   // Conn.Changes
	OpApply    Op = "apply"     // Conn.Apply
	OpMove     Op = "move"      // Conn.MoveToFolder
)

// allOps lists the Ops in the order of their counters.
var allOps = [...]Op{OpDial, OpTest, OpFetch, OpSend, OpFindSent, OpChanges, OpApply, OpMove}

// opNames are the crmsync.Error Op values of the fake's own errors, one per Op.
var opNames = [...]string{"fake dial", "fake test", "fake fetch", "fake send", "fake find-sent", "fake changes", "fake apply", "fake move"}

// testOps are the failure keys of FailTest, indexed by workload.
var testOps = [crmsync.NumWorkloads + 1]Op{"", "test incoming", "test outgoing", "test act"}

func (op Op) index() int {
	for i, o := range allOps {
		if o == op {
			return i
		}
	}
	return -1
}

// Folder names of the fake server.
const (
	Inbox      = "INBOX" // where Deliver and Send put incoming messages
	SentFolder = "Sent"  // where Send keeps the sender's copy; FindSent looks here
)

// Defaults of ServerConfig.
const (
	// DefaultFetchMax is the batch size of FetchIncoming when FetchRequest.Max is zero.
	DefaultFetchMax = 100
	// DefaultPageSize is the page size of Changes when ServerConfig.PageSize is zero.
	DefaultPageSize = 100
)

// ErrOutcomeUnknown is the cause of the transient error a Send returns after
// SendOutcomeUnknown: the server accepted the message, but the connection was lost
// before the client heard so.
var ErrOutcomeUnknown = errors.New("providertest: connection lost after the server accepted the message")

// errClosed is the cause of the error of a call on a closed Conn.
var errClosed = errors.New("providertest: connection is closed")

// ServerConfig configures a Server. Zero fields take their documented defaults.
type ServerConfig struct {
	// Clock gives ReceivedAt and SentAt times and drives Latency. Default schedule.Real.
	Clock schedule.Clock
	// Latency is waited on Clock at the start of every provider call (Dial, Test,
	// FetchIncoming, Send, FindSent, Changes, Apply, MoveToFolder; not Close), so a
	// schedule.Fake or testing/synctest controls it. Zero costs nothing. See also
	// Server.SetLatency.
	Latency time.Duration
	// NoItemSync makes the server lack appointments, contacts and tasks, like a POP3 or
	// plain IMAP server: Test(ACT) fails with an error wrapping crmsync.ErrNotSupported,
	// and so do Changes and Apply. A Conn still has those methods, so a type assertion
	// to provider.ItemSync succeeds; Test is what tells.
	NoItemSync bool
	// PageSize bounds the items of one Changes page. Default DefaultPageSize.
	PageSize int
	// OnCall, when not nil, is called at the start of every provider call, before the
	// latency and any injected error, in the caller's goroutine: a test can block in it,
	// or cancel the caller's context to simulate a crash mid-call. See Server.SetOnCall.
	OnCall func(address string, op Op)
}

// Server is a fake mail server holding many mailboxes, keyed by lower-case address. Each
// mailbox has an inbox, other folders (among them SentFolder), and appointments,
// contacts and tasks. A mailbox comes into being when it is first named by Dial,
// AddMailbox, Deliver, PutItem or another method that scripts it; methods that only read
// (Messages, SentItems, Items) or act on an existing message (Move, FailBody,
// DeleteItem) create none. Send delivers only to mailboxes that exist.
//
// Server implements provider.Dialer; the *Conn values it returns implement
// provider.Provider, IncomingMail, OutgoingMail, FolderMover and ItemSync. All methods
// are safe for concurrent use. The zero Server is not usable; call NewServer.
type Server struct {
	clock    schedule.Clock
	noItems  bool
	pageSize int
	latency  atomic.Int64 // time.Duration
	onCall   atomic.Pointer[func(string, Op)]

	mu    sync.RWMutex
	boxes map[string]*mailbox

	failMu sync.Mutex
	fails  failures // FailAll's, guarded by failMu

	subMu     sync.Mutex
	submitted []*crmsync.Email

	calls [len(allOps)]atomic.Int64

	conns    connCount
	profMu   sync.RWMutex
	profiles map[string]*connCount
}

// NewServer returns an empty server; it starts nothing.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Clock == nil {
		cfg.Clock = schedule.Real{}
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultPageSize
	}
	s := &Server{
		clock:    cfg.Clock,
		noItems:  cfg.NoItemSync,
		pageSize: cfg.PageSize,
		boxes:    make(map[string]*mailbox),
		profiles: make(map[string]*connCount),
	}
	s.latency.Store(int64(cfg.Latency))
	if cfg.OnCall != nil {
		s.SetOnCall(cfg.OnCall)
	}
	return s
}

// SetLatency changes the latency of the calls that start from now on.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// SetOnCall replaces the OnCall hook; nil removes it.
func (s *Server) SetOnCall(fn func(address string, op Op)) {
	if fn == nil {
		s.onCall.Store(nil)
		return
	}
	s.onCall.Store(&fn)
}

// normAddress is the key of a mailbox. strings.ToLower allocates only when it must.
func normAddress(address string) string { return strings.ToLower(strings.TrimSpace(address)) }

// box returns the mailbox at address, creating it if needed.
func (s *Server) box(address string) *mailbox {
	key := normAddress(address)
	s.mu.RLock()
	mb := s.boxes[key]
	s.mu.RUnlock()
	if mb != nil {
		return mb
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if mb = s.boxes[key]; mb == nil {
		mb = newMailbox(key)
		s.boxes[key] = mb
	}
	return mb
}

// lookup returns the mailbox at address, or nil if there is none.
func (s *Server) lookup(address string) *mailbox {
	key := normAddress(address)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.boxes[key]
}

// AddMailbox creates empty mailboxes at the addresses (those that exist are left as
// they are), so that Send delivers to them.
func (s *Server) AddMailbox(addresses ...string) {
	for _, a := range addresses {
		s.box(a)
	}
}

// SetPassword makes Dial of the mailbox at address require this password in the
// target's credentials (see provider.Target.Credentials); a wrong one is an auth error.
// An empty password turns the check off, which is the default.
func (s *Server) SetPassword(address, password string) {
	mb := s.box(address)
	mb.mu.Lock()
	mb.password = password
	mb.mu.Unlock()
}

// FailNext makes the next n calls of op on the mailbox at address return err, as given
// (a nil err stands for a transient error). A negative n fails every call until ClearFailures. Failures queue: a second FailNext
// for the same op takes effect when the first is spent. A mailbox's own failures come
// before FailAll's.
func (s *Server) FailNext(address string, op Op, err error, n int) {
	mb := s.box(address)
	mb.mu.Lock()
	mb.fails.add(op, err, n)
	mb.mu.Unlock()
}

// FailTest makes the next n Test calls for workload w on the mailbox at address return
// err; Test calls for other workloads pass. It comes before FailNext(address, OpTest, ...).
// It panics if w is not a workload.
func (s *Server) FailTest(address string, w crmsync.Workload, err error, n int) {
	if !w.Valid() {
		panic("providertest: FailTest of an invalid workload")
	}
	s.FailNext(address, testOps[w], err, n)
}

// FailAll makes the next n calls of op, on any mailbox, return err, as given. A
// negative n fails every call until ClearFailures.
func (s *Server) FailAll(op Op, err error, n int) {
	s.failMu.Lock()
	s.fails.add(op, err, n)
	s.failMu.Unlock()
}

// ClearFailures removes every pending injected failure, of FailNext, FailTest, FailAll
// and SendOutcomeUnknown.
func (s *Server) ClearFailures() {
	s.failMu.Lock()
	s.fails.clear()
	s.failMu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, mb := range s.boxes {
		mb.mu.Lock()
		mb.fails.clear()
		mb.unknownSends = 0
		mb.mu.Unlock()
	}
}

// SendOutcomeUnknown makes the next n Sends from the mailbox at address do everything
// a successful Send does (the message reaches Submitted, the Sent folder and the
// recipients) and then return a transient error wrapping ErrOutcomeUnknown: a crash or
// timeout after the server accepted the message. A failure injected for OpSend comes
// first and sends nothing.
func (s *Server) SendOutcomeUnknown(address string, n int) {
	mb := s.box(address)
	mb.mu.Lock()
	mb.unknownSends += n
	mb.mu.Unlock()
}

// ExpireCursors invalidates every cursor the mailbox at address has handed out, for
// incoming mail and for items, like a changed IMAP UIDVALIDITY or Graph's 410: the next
// FetchIncoming or Changes with an old cursor fails with a crmsync.KindCursorExpired
// error, and the client must start again from a nil cursor. Identities (ProviderIDs)
// stay as they were.
func (s *Server) ExpireCursors(address string) {
	mb := s.box(address)
	mb.mu.Lock()
	mb.epoch++
	mb.mu.Unlock()
}

// Calls returns how many times op was called, on any mailbox, failed calls included.
func (s *Server) Calls(op Op) int64 {
	i := op.index()
	if i < 0 {
		return 0
	}
	return s.calls[i].Load()
}

// OpenConns returns the connections open now, counted from the start of Dial to Close
// (a failed Dial counts until it returns).
func (s *Server) OpenConns() int { return int(s.conns.open.Load()) }

// MaxOpenConns returns the most connections ever open at once.
func (s *Server) MaxOpenConns() int { return int(s.conns.max.Load()) }

// OpenConnsFor returns the connections open now for the server profile with this ID
// (the ID of provider.Target.Profile; "" when Dial had no profile).
func (s *Server) OpenConnsFor(profileID string) int {
	if c := s.profileCount(profileID, false); c != nil {
		return int(c.open.Load())
	}
	return 0
}

// MaxOpenConnsFor returns the most connections ever open at once for the server
// profile with this ID: the proof that a per-profile connection cap held.
func (s *Server) MaxOpenConnsFor(profileID string) int {
	if c := s.profileCount(profileID, false); c != nil {
		return int(c.max.Load())
	}
	return 0
}

func (s *Server) profileCount(id string, create bool) *connCount {
	s.profMu.RLock()
	c := s.profiles[id]
	s.profMu.RUnlock()
	if c != nil || !create {
		return c
	}
	s.profMu.Lock()
	defer s.profMu.Unlock()
	if c = s.profiles[id]; c == nil {
		c = new(connCount)
		s.profiles[id] = c
	}
	return c
}

// Dial implements provider.Dialer: it opens a connection to the mailbox at
// t.Mailbox.Address, creating the mailbox if needed. It fails with an auth error when
// SetPassword set a password and the target's credentials carry another.
func (s *Server) Dial(ctx context.Context, t provider.Target) (provider.Provider, error) {
	if t.Mailbox == nil {
		return nil, crmsync.Errorf(crmsync.KindPermanent, opNames[0], "target has no mailbox")
	}
	mb := s.box(t.Mailbox.Address)
	var profileID string
	sentCopy := true
	if t.Profile != nil {
		profileID = t.Profile.ID
		sentCopy = t.Profile.SentCopy()
	}
	pc := s.profileCount(profileID, true)
	s.conns.inc()
	pc.inc()
	err := s.enter(ctx, mb, OpDial, "")
	if err == nil {
		mb.mu.Lock()
		pw := mb.password
		mb.mu.Unlock()
		if pw != "" && t.Credentials().Password != pw {
			err = crmsync.Errorf(crmsync.KindAuth, opNames[0], "mailbox %s: authentication failed", mb.addr)
		}
	}
	if err != nil {
		s.conns.dec()
		pc.dec()
		return nil, err
	}
	return &Conn{s: s, mb: mb, pc: pc, sentCopy: sentCopy}, nil
}

// enter begins a provider call: it counts it, runs the hook, waits the latency and
// returns an injected failure or the context's error. alt is a more specific failure
// key looked up first ("" for none). It allocates nothing on success.
func (s *Server) enter(ctx context.Context, mb *mailbox, op, alt Op) error {
	i := op.index()
	s.calls[i].Add(1)
	if h := s.onCall.Load(); h != nil {
		(*h)(mb.addr, op)
	}
	if d := time.Duration(s.latency.Load()); d > 0 {
		if err := schedule.Sleep(ctx, s.clock, d); err != nil {
			return provider.Classify(opNames[i], err)
		}
	} else if err := ctx.Err(); err != nil {
		return provider.Classify(opNames[i], err)
	}
	return s.injected(mb, op, alt)
}

func (s *Server) injected(mb *mailbox, op, alt Op) error {
	if mb.fails.pending.Load() > 0 {
		mb.mu.Lock()
		err := mb.fails.take(alt)
		if err == nil {
			err = mb.fails.take(op)
		}
		mb.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if s.fails.pending.Load() > 0 {
		s.failMu.Lock()
		err := s.fails.take(op)
		s.failMu.Unlock()
		return err
	}
	return nil
}

// Conn is one connection to a mailbox of a Server. It implements provider.Provider,
// IncomingMail, OutgoingMail, FolderMover and ItemSync. A call after Close fails with a
// permanent error.
type Conn struct {
	s        *Server
	mb       *mailbox
	pc       *connCount
	sentCopy bool
	closed   atomic.Bool
}

// Compile-time checks that Conn has every capability.
var (
	_ provider.Dialer       = (*Server)(nil)
	_ provider.Provider     = (*Conn)(nil)
	_ provider.IncomingMail = (*Conn)(nil)
	_ provider.OutgoingMail = (*Conn)(nil)
	_ provider.FolderMover  = (*Conn)(nil)
	_ provider.ItemSync     = (*Conn)(nil)
)

// Address returns the address of the connection's mailbox, lower-cased.
func (c *Conn) Address() string { return c.mb.addr }

func (c *Conn) enter(ctx context.Context, op, alt Op) error {
	if c.closed.Load() {
		return provider.Permanent(opNames[op.index()], errClosed)
	}
	return c.s.enter(ctx, c.mb, op, alt)
}

// Test implements provider.Provider. It succeeds for every workload, unless a failure
// is injected (FailTest, FailNext or FailAll with OpTest) or, for ACT, the server has
// NoItemSync.
func (c *Conn) Test(ctx context.Context, w crmsync.Workload) error {
	var alt Op
	if w.Valid() {
		alt = testOps[w]
	}
	if err := c.enter(ctx, OpTest, alt); err != nil {
		return err
	}
	switch w {
	case crmsync.Incoming, crmsync.Outgoing:
		return nil
	case crmsync.ACT:
		return c.s.itemsSupported(opNames[1])
	}
	return crmsync.Errorf(crmsync.KindPermanent, opNames[1], "unknown workload %d", uint8(w))
}

// Close implements provider.Provider; it is safe to call more than once.
func (c *Conn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.s.conns.dec()
		c.pc.dec()
	}
	return nil
}

// connCount counts open connections and remembers the most at once.
type connCount struct {
	open, max atomic.Int64
}

func (c *connCount) inc() {
	n := c.open.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (c *connCount) dec() { c.open.Add(-1) }

// failure is one injected error and how many more calls it fails (negative: all).
type failure struct {
	err error
	n   int
}

// failures are queued injected errors per Op. The owner's mutex guards m; pending
// counts the queued entries so that the common case checks one atomic and no lock.
type failures struct {
	pending atomic.Int32
	m       map[Op][]failure
}

func (f *failures) add(op Op, err error, n int) {
	if n == 0 {
		return
	}
	if err == nil {
		err = provider.Transient("fake "+string(op), errors.New("injected failure"))
	}
	if f.m == nil {
		f.m = make(map[Op][]failure)
	}
	f.m[op] = append(f.m[op], failure{err: err, n: n})
	f.pending.Add(1)
}

// take returns the next injected error for op, or nil.
func (f *failures) take(op Op) error {
	if op == "" {
		return nil
	}
	q := f.m[op]
	if len(q) == 0 {
		return nil
	}
	err := q[0].err
	if q[0].n > 0 {
		q[0].n--
		if q[0].n == 0 {
			q = q[1:]
			f.pending.Add(-1)
			if len(q) == 0 {
				delete(f.m, op)
			} else {
				f.m[op] = q
			}
		}
	}
	return err
}

func (f *failures) clear() {
	f.m = nil
	f.pending.Store(0)
}
