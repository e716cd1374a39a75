package gmail

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
	"github.com/crmsync/crmsync/provider/gmail/internal/imapwire"
)

// Gmail's IMAP extensions (https://developers.google.com/workspace/gmail/imap/imap-extensions): where the
// server announces X-GM-EXT-1, every message has an X-GM-MSGID, unique in the account and the same under
// every label (IMAP folder) it appears in, and X-GM-LABELS, its labels. go-imap's client cannot ask for them,
// so this file asks on the bridge's side channel, in the screening step of provider/imap's fetch: the
// header-only emails it screens are the ones the batch returns, so their new identity and folder stay on
// them.

// gmPrefix starts a ProviderID made of an X-GM-MSGID.
const gmPrefix = "gm:"

// gmailSession returns the bridge's IMAP session when the server announced X-GM-EXT-1, else nil.
func (c *Conn) gmailSession() *imapSession {
	if c.b == nil || !hasCap(c.b.capabilities(), "X-GM-EXT-1") {
		return nil
	}
	return c.b.session()
}

// labelFetch is one FetchIncoming call in Gmail's terms.
type labelFetch struct {
	c       *Conn
	tracked []string
	screen  provider.ScreenFunc
	seen    map[string]bool // X-GM-MSGIDs already in this batch
}

// gmInfo is what Gmail says of one message.
type gmInfo struct {
	msgid  string
	labels []string // decoded; system labels as Gmail writes them ("\Inbox")
}

// screenHeaders gives each header-only email its Gmail identity and folder, drops the repeats of a message
// already in the batch under another label, and screens the rest with the caller's ScreenFunc.
func (lf *labelFetch) screenHeaders(ctx context.Context, headers []*crmsync.Email) ([]bool, error) {
	sess := lf.c.gmailSession()
	if sess == nil || len(headers) == 0 {
		return lf.callScreen(ctx, headers)
	}
	// provider/imap screens the messages of one folder at a time, with that folder selected.
	folder := headers[0].Folder
	uids := make(map[*crmsync.Email]uint32, len(headers))
	var set []string
	for _, e := range headers {
		f, uid, ok := splitIMAPID(e.ProviderID)
		if ok && f == folder {
			uids[e] = uid
			set = append(set, strconv.FormatUint(uint64(uid), 10))
		}
	}
	infos := map[uint32]gmInfo{}
	if len(set) > 0 {
		untagged, err := sess.command(ctx, "UID FETCH "+strings.Join(set, ",")+" (UID X-GM-MSGID X-GM-LABELS)")
		if err != nil {
			return nil, provider.Classify("gmail fetch", fmt.Errorf("%s: X-GM-MSGID of %s: %w", lf.c.whoami(), folder, err))
		}
		infos = parseGmailFetch(untagged)
	}
	verdicts := make([]bool, len(headers))
	var candidates []*crmsync.Email
	var at []int
	for i, e := range headers {
		if uid, ok := uids[e]; ok {
			if info, ok := infos[uid]; ok {
				id := gmPrefix + info.msgid
				lf.c.gmIDs[id] = e.ProviderID
				e.ProviderID = id
				e.Folder = pickFolder(e.Folder, info.labels, lf.tracked)
				if lf.seen[id] {
					continue // the same message, under another label, earlier in this batch
				}
				lf.seen[id] = true
			}
		}
		candidates = append(candidates, e)
		at = append(at, i)
	}
	if len(candidates) == 0 {
		return verdicts, nil
	}
	got, err := lf.callScreen(ctx, candidates)
	if err != nil {
		return nil, err
	}
	for j, ok := range got {
		verdicts[at[j]] = ok
	}
	return verdicts, nil
}

func (lf *labelFetch) callScreen(ctx context.Context, headers []*crmsync.Email) ([]bool, error) {
	if lf.screen == nil {
		out := make([]bool, len(headers))
		for i := range out {
			out[i] = true
		}
		return out, nil
	}
	return lf.screen(ctx, headers)
}

// parseGmailFetch reads the answers to UID FETCH (UID X-GM-MSGID X-GM-LABELS), by UID.
func parseGmailFetch(untagged [][]byte) map[uint32]gmInfo {
	out := map[uint32]gmInfo{}
	for _, msg := range untagged {
		vals, err := imapwire.Parse(msg)
		if err != nil {
			continue
		}
		_, attrs, ok := imapwire.Attrs(vals)
		if !ok {
			continue
		}
		uid, err1 := strconv.ParseUint(attrs["UID"].Text, 10, 32)
		msgid := attrs["X-GM-MSGID"].Text
		if _, err2 := strconv.ParseUint(msgid, 10, 64); err1 != nil || err2 != nil {
			continue
		}
		info := gmInfo{msgid: msgid}
		for _, l := range attrs["X-GM-LABELS"].List {
			if l.Kind == imapwire.Atom || l.Kind == imapwire.String {
				info.labels = append(info.labels, imapwire.DecodeMailbox(l.Text))
			}
		}
		out[uint32(uid)] = info
	}
	return out
}

// pickFolder returns the first tracked folder among a message's labels (INBOX for Gmail's \Inbox), else
// current.
func pickFolder(current string, labels, tracked []string) string {
	for _, f := range tracked {
		for _, l := range labels {
			if l == f || (strings.EqualFold(f, "INBOX") && strings.EqualFold(l, `\Inbox`)) {
				return f
			}
		}
	}
	return current
}

// splitIMAPID splits provider/imap's identity "<folder>/<uidvalidity>/<uid>".
func splitIMAPID(id string) (folder string, uid uint32, ok bool) {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return "", 0, false
	}
	u, err := strconv.ParseUint(id[i+1:], 10, 32)
	if err != nil || u == 0 {
		return "", 0, false
	}
	rest := id[:i]
	j := strings.LastIndexByte(rest, '/')
	if j <= 0 {
		return "", 0, false
	}
	if _, err := strconv.ParseUint(rest[j+1:], 10, 32); err != nil {
		return "", 0, false
	}
	return rest[:j], uint32(u), true
}

// resolve finds the provider/imap identity of a "gm:" one: from this Conn's fetches, else by searching
// ref.Folder (INBOX when empty) for the X-GM-MSGID.
func (c *Conn) resolve(ctx context.Context, ref provider.ItemRef) (string, error) {
	const op = "gmail move"
	if id, ok := c.gmIDs[ref.ID]; ok {
		return id, nil
	}
	msgid := strings.TrimPrefix(ref.ID, gmPrefix)
	if _, err := strconv.ParseUint(msgid, 10, 64); err != nil {
		return "", provider.Permanent(op, fmt.Errorf("%q is not a Gmail message identity", ref.ID))
	}
	sess := c.gmailSession()
	if sess == nil && c.b != nil && c.b.session() == nil {
		// Sign in first: the session tells whether the server speaks Gmail's extensions.
		if err := c.base.Test(ctx, crmsync.Incoming); err != nil {
			return "", err
		}
		sess = c.gmailSession()
	}
	if sess == nil {
		return "", provider.Permanent(op, fmt.Errorf("%s: the server does not announce X-GM-EXT-1, so %q names no message there", c.whoami(), ref.ID))
	}
	folder := ref.Folder
	if folder == "" {
		folder = "INBOX"
	}
	untagged, err := sess.command(ctx, "EXAMINE "+imapwire.Quote(imapwire.EncodeMailbox(folder)))
	if err != nil {
		var se *imapStatusError
		if errors.As(err, &se) {
			return "", provider.NotFound(op, fmt.Errorf("%s: no folder %s (%v): %w", ref.ID, folder, err, crmsync.ErrNotFound))
		}
		return "", provider.Classify(op, err)
	}
	var validity uint64
	for _, msg := range untagged {
		s := strings.ToUpper(string(msg))
		if i := strings.Index(s, "[UIDVALIDITY "); i >= 0 {
			rest := s[i+len("[UIDVALIDITY "):]
			if j := strings.IndexByte(rest, ']'); j > 0 {
				validity, _ = strconv.ParseUint(rest[:j], 10, 32)
			}
		}
	}
	untagged, err = sess.command(ctx, "UID SEARCH X-GM-MSGID "+msgid)
	if err != nil {
		return "", provider.Classify(op, err)
	}
	for _, msg := range untagged {
		vals, err := imapwire.Parse(msg)
		if err != nil || len(vals) < 3 || !strings.EqualFold(vals[1].Text, "SEARCH") {
			continue
		}
		if uid, err := strconv.ParseUint(vals[2].Text, 10, 32); err == nil && uid > 0 {
			return fmt.Sprintf("%s/%d/%d", folder, validity, uid), nil
		}
	}
	return "", provider.NotFound(op, fmt.Errorf("%s: no message %s in %s: %w", c.whoami(), ref.ID, folder, crmsync.ErrNotFound))
}
