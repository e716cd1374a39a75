package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/mailparse"
)

// FetchIncoming returns the messages that arrived in INBOX and req.Folders after
// req.Cursor, headers first: req.Screen sees header-only emails, and only the accepted
// messages are fetched in full. At most req.Max messages (Config.MaxMessages when zero)
// are looked at, folder by folder in the order INBOX then req.Folders, lowest UIDs
// first; More is set when some remain. See the package documentation for the cursor
// and the round trips.
//
// A cursor that cannot be read is a cursor-expired error. A missing INBOX is a
// not-found error; a missing tracked folder is skipped and logged, so that a folder the
// user deleted does not stop the inbox.
func (c *Conn) FetchIncoming(ctx context.Context, req provider.FetchRequest) (*provider.Batch, error) {
	const op = "imap fetch"
	cur, err := decodeCursor(req.Cursor)
	if err != nil {
		return nil, provider.CursorExpired(op, err)
	}
	max := req.Max
	if max <= 0 {
		max = c.d.cfg.MaxMessages
	}
	batch := &provider.Batch{}
	err = c.withSession(ctx, op, func(cl *imapclient.Client) error {
		f := &fetcher{c: c, cl: cl, ctx: ctx, req: req, cur: cur, budget: max, batch: batch}
		return f.run(folderList(req.Folders))
	})
	if err != nil {
		return nil, err
	}
	batch.Cursor = cur.encode()
	return batch, nil
}

// folderList returns INBOX followed by the tracked folders, without repeats.
func folderList(tracked []string) []string {
	out := []string{"INBOX"}
	for _, f := range tracked {
		if f == "" || strings.EqualFold(f, "INBOX") || slices.Contains(out, f) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// callerError carries an error of the caller's own code (the Screen function) through
// withIMAP unchanged.
type callerError struct{ err error }

func (e *callerError) Error() string { return e.err.Error() }
func (e *callerError) Unwrap() error { return e.err }

// fetcher is one FetchIncoming call.
type fetcher struct {
	c      *Conn
	cl     *imapclient.Client
	ctx    context.Context
	req    provider.FetchRequest
	cur    *cursor
	budget int // messages that may still be looked at
	batch  *provider.Batch
	pre    *prefetch // what the previous batch asked for ahead, if anything
}

func (f *fetcher) run(folders []string) error {
	f.pre, f.c.prefetch = f.c.prefetch, nil
	defer f.pre.release()
	if ok, err := f.continuePending(folders[0]); ok || err != nil {
		return err
	}
	condstore := f.cl.Caps().Has(imap.CapCondStore)
	opts := &imap.StatusOptions{UIDNext: true, UIDValidity: true, HighestModSeq: condstore}

	// A server may answer STATUS on the selected mailbox from the state it had when it
	// was selected (Dovecot does), which would hide mail that arrived since. A folder
	// this call reads and the previous batch left open is kept open (opening it again
	// costs the server a reload: Dovecot, ~35 ms at 20,000 messages), and NOOP brings
	// the session's view up to date, on its own: Dovecot runs a pipelined NOOP's sync
	// after the STATUS that follows it. Any other mailbox is left with UNSELECT,
	// pipelined with the STATUS commands; a read-only (EXAMINEd) mailbox is closed
	// without an expunge either way.
	var unselect *imapclient.Command
	if mb := f.cl.Mailbox(); mb != nil {
		if !slices.Contains(folders, mb.Name) && f.cl.Caps().Has(imap.CapUnselect) {
			unselect = f.cl.Unselect()
		} else if err := f.cl.Noop().Wait(); err != nil {
			return err
		}
	}
	// One round trip for all folders: the STATUS commands are pipelined.
	cmds := make([]*imapclient.StatusCommand, len(folders))
	for i, name := range folders {
		cmds[i] = f.cl.Status(name, opts)
	}
	statuses := make([]*imap.StatusData, len(folders))
	var firstErr error
	if unselect != nil {
		// NO or BAD ("not in the selected state") both leave the session unselected,
		// which is all this asks for.
		var ierr *imap.Error
		if err := unselect.Wait(); err != nil && !errors.As(err, &ierr) {
			return err
		}
	}
	for i, cmd := range cmds {
		st, err := cmd.Wait()
		switch {
		case err == nil:
			statuses[i] = st
		case i > 0 && isNo(err):
			f.c.log.Warn("imap: tracked folder cannot be read; skipped", "folder", folders[i], "err", err)
		case missingMailbox(err):
			firstErr = firstError(firstErr, notFound("imap fetch", "%s: no folder %s (%v)", f.c.whoOr("mailbox"), folders[i], err))
		default:
			firstErr = firstError(firstErr, err)
		}
	}
	if firstErr != nil {
		return firstErr
	}
	for i, name := range folders {
		if statuses[i] == nil {
			continue
		}
		if err := f.folder(name, statuses[i], condstore); err != nil {
			return err
		}
	}
	return nil
}

// firstError returns the first non-nil error.
func firstError(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// missingMailbox reports whether a command failed because the mailbox does not exist.
func missingMailbox(err error) bool {
	var ierr *imap.Error
	if !errors.As(err, &ierr) || ierr.Type != imap.StatusResponseTypeNo {
		return false
	}
	if ierr.Code == imap.ResponseCodeNonExistent || ierr.Code == imap.ResponseCodeTryCreate {
		return true
	}
	// Some servers (Dovecot for SELECT and STATUS) say so in text without a code.
	text := strings.ToLower(ierr.Text)
	return ierr.Code == "" && (strings.Contains(text, "doesn't exist") || strings.Contains(text, "does not exist") ||
		strings.Contains(text, "no such mailbox") || strings.Contains(text, "unknown mailbox"))
}

// isNo reports whether err is a NO answer: the command failed, the session is fine.
func isNo(err error) bool {
	var ierr *imap.Error
	return errors.As(err, &ierr) && ierr.Type == imap.StatusResponseTypeNo
}

// folder reads one folder from its cursor position.
func (f *fetcher) folder(name string, st *imap.StatusData, condstore bool) error {
	fs := f.cur.Folders[name]
	if fs != nil && st.UIDValidity != 0 && st.UIDValidity == fs.Validity && fs.Next != 0 && uint32(st.UIDNext) == fs.Next {
		return nil // nothing arrived since the folder was read to its end
	}
	if f.budget <= 0 {
		f.batch.More = true
		return nil
	}
	var sel *imap.SelectData
	if mb := f.cl.Mailbox(); mb != nil && mb.Name == name && st.UIDValidity != 0 {
		// Still open from the previous batch, and brought up to date by the NOOP before
		// STATUS, whose numbers stand for SELECT's.
		sel = &imap.SelectData{UIDValidity: st.UIDValidity, UIDNext: st.UIDNext, HighestModSeq: st.HighestModSeq}
	} else {
		var err error
		sel, err = f.cl.Select(name, &imap.SelectOptions{ReadOnly: true, CondStore: condstore}).Wait()
		if err != nil {
			if missingMailbox(err) {
				return notFound("imap fetch", "%s: no folder %s (%v)", f.c.whoOr("mailbox"), name, err)
			}
			return err
		}
	}
	if fs == nil || fs.Validity != sel.UIDValidity {
		if fs != nil {
			f.c.log.Info("imap: UIDVALIDITY changed; reading the folder again from its first message",
				"folder", name, "old", fs.Validity, "new", sel.UIDValidity)
		}
		fs = &folderState{Validity: sel.UIDValidity}
		f.cur.Folders[name] = fs
	}

	uids, err := f.search(name, fs, sel)
	if err != nil {
		return err
	}

	caughtUp := func() {
		if next := uint32(sel.UIDNext); next > 0 {
			fs.Last = max(fs.Last, next-1)
			fs.Next = next
		}
		fs.ModSeq = sel.HighestModSeq
	}
	if len(uids) == 0 {
		caughtUp()
		return nil
	}
	return f.take(name, fs, uids, caughtUp)
}

// take reads the first of uids (the folder's UIDs above the cursor, ascending) that the
// budget allows and moves the cursor past them; caughtUp marks the folder read to its
// end when they were all taken.
func (f *fetcher) take(name string, fs *folderState, uids []imap.UID, caughtUp func()) error {
	take, rest := uids[:min(f.budget, len(uids))], uids[min(f.budget, len(uids)):]
	// The next batch of the cycle will most likely read the next UIDs: messages asks
	// for them ahead, so that the server is never idle between batches.
	if err := f.messages(name, fs.Validity, take, rest[:min(len(rest), len(take))]); err != nil {
		return err
	}
	f.budget -= len(take)
	fs.Last = uint32(take[len(take)-1])
	if p := f.c.pending; p != nil {
		p.uids, p.last = rest, fs.Last
	}
	if len(rest) > 0 || caughtUp == nil {
		f.batch.More = true
		fs.Next = 0
		return nil
	}
	// Every message below the UIDNEXT seen at SELECT was in the search: the folder is
	// read to its end.
	caughtUp()
	return nil
}

// continuePending reads the next batch of a folder that the previous batch of this
// session left open with more UIDs found than this batch takes: from those UIDs,
// without NOOP, STATUS or a new search, so that a folder read in batches costs one
// round trip per batch. Since the folder is not read to its end, nothing is missed:
// what arrived meanwhile is found by the batch that reaches the end. It reports false
// when there is nothing to continue from.
func (f *fetcher) continuePending(first string) (bool, error) {
	p, mb := f.c.pending, f.cl.Mailbox()
	if p == nil || mb == nil || mb.Name != first || p.folder != first || !p.since.Equal(f.req.Since) || len(p.uids) <= f.budget {
		return false, nil
	}
	fs := f.cur.Folders[first]
	if fs == nil || fs.Validity != p.validity || fs.Last != p.last {
		return false, nil
	}
	return true, f.take(first, fs, p.uids, nil)
}

// pendingUIDs are the UIDs a search found that a batch did not take yet. The next batch
// of the cycle (same connection, folder still open) continues from them and searches
// only above what was searched, so that reading a folder in batches searches it once,
// not once per batch (SINCE makes the server look at the date of every message in the
// range: Dovecot, ~18 ms at 20,000 messages).
type pendingUIDs struct {
	folder   string
	validity uint32
	since    time.Time
	last     uint32     // the cursor position they follow
	covered  uint32     // every UID up to this one was searched
	uids     []imap.UID // found, above last, ascending
}

// search returns the UIDs above fs.Last received since the request's Since, ascending.
func (f *fetcher) search(name string, fs *folderState, sel *imap.SelectData) ([]imap.UID, error) {
	p := f.c.pending
	fresh := p == nil || p.folder != name || p.validity != fs.Validity || !p.since.Equal(f.req.Since) || p.last != fs.Last
	if fresh {
		p = &pendingUIDs{folder: name, validity: fs.Validity, since: f.req.Since, last: fs.Last, covered: fs.Last}
		f.c.pending = p
	}
	top := uint32(sel.UIDNext) - 1 // the highest UID the server has given so far
	if !fresh && sel.UIDNext != 0 && p.covered >= top {
		return p.uids, nil
	}
	criteria := &imap.SearchCriteria{UID: []imap.UIDSet{{{Start: imap.UID(p.covered + 1), Stop: 0}}}}
	if !f.req.Since.IsZero() {
		criteria.Since = searchSince(f.req.Since)
	}
	var opts *imap.SearchOptions
	if f.cl.Caps().Has(imap.CapESearch) {
		opts = &imap.SearchOptions{ReturnAll: true} // "1:20000" rather than 20,000 numbers
	}
	data, err := f.cl.UIDSearch(criteria, opts).Wait()
	if err != nil {
		return nil, err
	}
	var found []imap.UID
	for _, uid := range data.AllUIDs() {
		// "n:*" also matches the highest UID when it is below n.
		if uint32(uid) > p.covered {
			found = append(found, uid)
		}
	}
	slices.Sort(found)
	p.uids = append(p.uids, found...)
	if sel.UIDNext != 0 {
		p.covered = max(p.covered, top)
	}
	if len(found) > 0 {
		p.covered = max(p.covered, uint32(found[len(found)-1]))
	}
	return p.uids, nil
}

// searchSince returns the SEARCH SINCE date for since. SINCE compares dates only, in
// the server's time zone, so the search starts a day early and INTERNALDATE is compared
// exactly after the headers are fetched.
func searchSince(since time.Time) time.Time {
	u := since.UTC()
	return time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
}

var headerSection = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
var fullSection = &imap.FetchItemBodySection{Peek: true}

// headerFetch is what the header FETCH asks of each message.
var headerFetch = &imap.FetchOptions{
	UID: true, InternalDate: true, RFC822Size: true,
	BodySection: []*imap.FetchItemBodySection{headerSection},
}

// fetchedHeader is one message of a header FETCH, with its header-only email (nil when
// the header could not be parsed).
type fetchedHeader struct {
	buf *imapclient.FetchMessageBuffer
	e   *crmsync.Email
}

// parseHeaders parses the headers of a header FETCH's messages, by UID. Messages the
// server did not answer for (expunged) are left out.
func parseHeaders(folder string, validity uint32, bufs []*imapclient.FetchMessageBuffer) map[imap.UID]fetchedHeader {
	out := make(map[imap.UID]fetchedHeader, len(bufs))
	for _, b := range bufs {
		raw := b.FindBodySection(headerSection)
		if b.UID == 0 || raw == nil {
			continue
		}
		h := fetchedHeader{buf: b}
		if e, err := headerOnly(folder, validity, b.UID, raw); err == nil {
			e.Size = b.RFC822Size
			e.ReceivedAt = b.InternalDate
			h.e = e
		}
		out[b.UID] = h
	}
	return out
}

// headers returns the fetched headers of uids: those the previous batch prefetched, and
// the others fetched now. A UID the prefetch's answer left out may have been expunged,
// but it is asked for again rather than the silence taken for that: a message must
// never pass for expunged because an answer went astray (provider/gmail's bridge, for
// one, takes the untagged answers that come while a command of its own is in flight),
// or was dropped over Config.PrefetchBytes.
func (f *fetcher) headers(folder string, validity uint32, uids []imap.UID) (map[imap.UID]fetchedHeader, error) {
	var out map[imap.UID]fetchedHeader
	missing := uids
	if p := f.pre; p.usable(folder, validity) && waitHeaders(p) == nil {
		out, missing = p.headers, nil
		for _, uid := range uids {
			if _, ok := p.headers[uid]; !ok {
				missing = append(missing, uid)
			}
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	bufs, err := f.cl.Fetch(imap.UIDSetNum(missing...), headerFetch).Collect()
	if err != nil {
		return nil, err
	}
	fetched := parseHeaders(folder, validity, bufs)
	if out == nil {
		return fetched, nil
	}
	maps.Copy(out, fetched)
	return out, nil
}

// messages fetches the headers of uids, screens them, and fetches the accepted ones in
// full (or takes them from the prefetch), and asks ahead for next: as it starts, or,
// with Config.ScreenUsesSession, once they are screened, so that nothing of the
// Conn's is in flight while req.Screen runs.
func (f *fetcher) messages(folder string, validity uint32, uids, next []imap.UID) error {
	prefetch := func() {
		if len(next) > 0 {
			f.startPrefetch(folder, validity, next)
			next = nil
		}
	}
	if !f.c.d.cfg.ScreenUsesSession {
		prefetch()
	}
	fetched, err := f.headers(folder, validity, uids)
	if err != nil {
		return err
	}

	emails := make(map[imap.UID]*crmsync.Email)
	var headerless []imap.UID
	for _, uid := range uids {
		h, ok := fetched[uid]
		if !ok {
			continue // expunged since the search: nothing to track
		}
		if !f.req.Since.IsZero() && !h.buf.InternalDate.IsZero() && h.buf.InternalDate.Before(f.req.Since) {
			continue // received before the effective start
		}
		if h.e == nil {
			headerless = append(headerless, uid)
			continue
		}
		emails[uid] = h.e
	}

	// A server may fail to cut the header of a malformed message (imapmemserver does):
	// read those from the whole message, which they then do not fetch again.
	full := make(map[imap.UID][]byte)
	var unfetched []imap.UID
	for _, uid := range headerless {
		if raw := f.pre.body(folder, validity, uid); raw != nil {
			full[uid] = raw
		} else {
			unfetched = append(unfetched, uid)
		}
	}
	if len(unfetched) > 0 {
		if err := f.fetchFull(unfetched, func(uid imap.UID, raw []byte) { full[uid] = raw }); err != nil {
			return err
		}
	}
	for _, uid := range headerless {
		raw := full[uid]
		if raw == nil {
			continue // expunged since
		}
		e, err := headerOnly(folder, validity, uid, raw)
		if err != nil {
			id := providerID(folder, validity, uid)
			f.fail(folder, id, "", provider.Permanent("imap parse", fmt.Errorf("%s: %w", id, err)))
			delete(full, uid)
			putRaw(raw)
			continue
		}
		b := fetched[uid].buf
		e.Size = b.RFC822Size
		e.ReceivedAt = b.InternalDate
		emails[uid] = e
	}

	var candidates []*crmsync.Email
	for _, uid := range uids {
		if e := emails[uid]; e != nil {
			candidates = append(candidates, e)
		}
	}
	if len(candidates) == 0 {
		prefetch()
		return nil
	}
	accepted, err := f.screen(candidates)
	if err != nil {
		return err
	}
	f.c.acceptedAll = len(accepted) == len(candidates)
	prefetch()

	// Parse the accepted messages as their bodies arrive (or from the bytes in hand),
	// and add them in UID order.
	var want []imap.UID
	ahead := make(map[imap.UID][]byte)
	for _, uid := range uids {
		e := emails[uid]
		switch {
		case e == nil || !accepted[e]:
			if raw := full[uid]; raw != nil {
				putRaw(raw)
			}
		default:
			raw := full[uid] // read whole for its header
			if raw == nil {
				raw = f.pre.body(folder, validity, uid)
			}
			if raw != nil {
				ahead[uid] = raw
			}
			want = append(want, uid)
		}
	}
	parsed := make(map[imap.UID]bool)
	if len(want) > 0 {
		if err := f.fetchBodies(folder, want, ahead, emails, parsed); err != nil {
			return err
		}
	}
	for _, uid := range uids {
		e := emails[uid]
		switch {
		case e == nil || !accepted[e]:
		case parsed[uid]:
			f.batch.Emails = append(f.batch.Emails, e)
		default:
			f.fail(folder, e.ProviderID, e.MessageID, notFound("imap fetch", "%s was expunged before its body was fetched", e.ProviderID))
		}
	}
	return nil
}

// fetchBodies parses the whole messages of uids into their emails on other goroutines:
// those in ahead (in hand already) first, while the others are fetched, so that the
// connection and the parsing overlap instead of taking turns. An email that cannot be
// parsed is reported in the batch's Failed and removed from emails.
//
// The messages in hand are shared out by a counter, not handed over one by one: with
// every message of a batch fetched ahead (the usual case of an ingest), a batch costs
// no wake-up of one goroutine by another per message, and this goroutine parses its
// share instead of waiting.
func (f *fetcher) fetchBodies(folder string, uids []imap.UID, ahead map[imap.UID][]byte, emails map[imap.UID]*crmsync.Email, parsed map[imap.UID]bool) error {
	type job struct {
		uid imap.UID
		raw []byte
		e   *crmsync.Email
	}
	take := func(uid imap.UID, raw []byte) (job, bool) {
		e := emails[uid]
		if e == nil || parsed[uid] {
			return job{}, false
		}
		parsed[uid] = true
		return job{uid, raw, e}, true
	}
	var inHand []job
	var rest []imap.UID
	for _, uid := range uids {
		if raw := ahead[uid]; raw == nil {
			rest = append(rest, uid)
		} else if j, ok := take(uid, raw); ok {
			inHand = append(inHand, j)
		}
	}

	opts := mailparse.Options{AttachmentLimit: f.req.AttachmentLimit}
	var (
		mu   sync.Mutex
		errs = make(map[imap.UID]error) // the messages that could not be parsed
	)
	parse := func(j job) {
		if err := mailparse.ParseBody(j.e, j.raw, opts); err != nil {
			mu.Lock()
			errs[j.uid] = err
			mu.Unlock()
		}
		putRaw(j.raw) // the email keeps copies of what it needs
	}
	var next atomic.Int64
	parseInHand := func() {
		for i := int(next.Add(1)) - 1; i < len(inHand); i = int(next.Add(1)) - 1 {
			parse(inHand[i])
		}
	}
	jobs := make(chan job, 8)
	work := func() {
		parseInHand()
		for j := range jobs {
			parse(j)
		}
	}
	var wg sync.WaitGroup
	workers := max(1, runtime.GOMAXPROCS(0))
	if len(rest) == 0 {
		workers-- // this goroutine is one of them
	}
	for range min(workers, len(inHand)+len(rest)) {
		wg.Go(work)
	}
	var err error
	if len(rest) > 0 {
		err = f.fetchFull(rest, func(uid imap.UID, raw []byte) {
			if j, ok := take(uid, raw); ok {
				jobs <- j
			}
		})
	}
	close(jobs)
	work()
	wg.Wait()

	for _, uid := range slices.Sorted(maps.Keys(errs)) {
		e := emails[uid]
		f.fail(folder, e.ProviderID, e.MessageID, provider.Permanent("imap parse", fmt.Errorf("%s: %w", e.ProviderID, errs[uid])))
		emails[uid] = nil
	}
	return err
}

// fail reports a message of folder the batch cannot return, in its Failed.
func (f *fetcher) fail(folder, id, messageID string, err error) {
	f.batch.Failed = append(f.batch.Failed, provider.FailedItem{
		Ref: provider.ItemRef{Folder: folder, ID: id}, MessageID: messageID, Err: err,
	})
}

// headerOnly builds the header-only email of one message from its header (or whole
// message); a *mailparse.ParseError when it has no readable header.
func headerOnly(folder string, validity uint32, uid imap.UID, raw []byte) (*crmsync.Email, error) {
	e, err := mailparse.ParseHeader(raw)
	if err != nil {
		return nil, err
	}
	e.ProviderID = providerID(folder, validity, uid)
	e.Folder = folder
	return e, nil
}

// screen asks req.Screen which candidates to fetch in full; nil accepts all.
func (f *fetcher) screen(candidates []*crmsync.Email) (map[*crmsync.Email]bool, error) {
	accepted := make(map[*crmsync.Email]bool, len(candidates))
	if f.req.Screen == nil {
		for _, e := range candidates {
			accepted[e] = true
		}
		return accepted, nil
	}
	// Screen gets the emails the batch returns, so that what it learns from the
	// headers (a correlation, say) stays on them.
	verdicts, err := f.req.Screen(f.ctx, candidates)
	if err != nil {
		return nil, &callerError{err}
	}
	if len(verdicts) != len(candidates) {
		return nil, crmsync.Errorf(crmsync.KindPermanent, "imap fetch", "screen returned %d verdicts for %d emails", len(verdicts), len(candidates))
	}
	for i, ok := range verdicts {
		if ok {
			accepted[candidates[i]] = true
		}
	}
	return accepted, nil
}

// fullFetch is what a FETCH of whole messages asks.
var fullFetch = &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{fullSection}}

// fetchFull fetches whole messages (BODY.PEEK[]) and hands each to got as it arrives,
// so that one message at a time is held in memory. The bytes come from getRaw: got may
// give them back with putRaw once nothing refers to them any more.
func (f *fetcher) fetchFull(uids []imap.UID, got func(uid imap.UID, raw []byte)) error {
	cmd := f.cl.Fetch(imap.UIDSetNum(uids...), fullFetch)
	return readFull(f.cl, cmd, nil, func(b *imapclient.FetchMessageBuffer, raw []byte) {
		if raw != nil {
			got(b.UID, raw)
		}
	})
}

// readFull reads the answer to a FETCH of whole messages and hands got each message
// with a UID, as it arrives: its UID, INTERNALDATE and RFC822.SIZE as far as asked, and
// its bytes, read into a buffer from getRaw, or nil when it came without them or keep
// (if not nil) refused its size (its bytes are then read and dropped).
func readFull(cl *imapclient.Client, cmd *imapclient.FetchCommand, keep func(size int64) bool,
	got func(b *imapclient.FetchMessageBuffer, raw []byte)) error {
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		b := &imapclient.FetchMessageBuffer{}
		var raw []byte
		var readErr error
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				b.UID = it.UID
			case imapclient.FetchItemDataInternalDate:
				b.InternalDate = it.Time
			case imapclient.FetchItemDataRFC822Size:
				b.RFC822Size = it.Size
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil {
					continue
				}
				switch size := it.Literal.Size(); {
				case keep != nil && !keep(size):
					_, readErr = io.Copy(io.Discard, it.Literal)
				default:
					// A buffer of the announced size, not io.ReadAll's doublings (18% of
					// the client CPU of the 20,000-message benchmark), and a recycled one.
					raw = getRaw(int(size))
					if _, readErr = io.ReadFull(it.Literal, raw); readErr != nil {
						raw = nil
					}
				}
			}
			if readErr != nil {
				break // msg.Next would read the failed literal again
			}
		}
		if readErr != nil {
			// The connection broke inside a literal. go-imap's reader goes on as soon as
			// the literal fails, and Next and Close would read the literal again to
			// discard it, racing with that reader: close the client first, which waits
			// for its reader to stop.
			cl.Close()
			if err := cmd.Close(); err != nil {
				return err
			}
			return readErr
		}
		if b.UID != 0 {
			got(b, raw)
		}
	}
	return cmd.Close()
}

// providerID is a message's identity: "<folder>/<uidvalidity>/<uid>".
func providerID(folder string, validity uint32, uid imap.UID) string {
	return fmt.Sprintf("%s/%d/%d", folder, validity, uid)
}

// parseProviderID splits a provider identity; the folder may itself contain slashes.
func parseProviderID(id string) (folder string, validity uint32, uid imap.UID, err error) {
	bad := fmt.Errorf("%q is not an IMAP provider id", id)
	rest, u, ok := cutLast(id)
	if !ok {
		return "", 0, 0, bad
	}
	folder, v, ok := cutLast(rest)
	if !ok || folder == "" {
		return "", 0, 0, bad
	}
	vn, err1 := strconv.ParseUint(v, 10, 32)
	un, err2 := strconv.ParseUint(u, 10, 32)
	if err1 != nil || err2 != nil || un == 0 {
		return "", 0, 0, bad
	}
	return folder, uint32(vn), imap.UID(un), nil
}

func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}
