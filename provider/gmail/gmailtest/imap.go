package gmailtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/crmsync/crmsync/provider/gmail/internal/imapwire"
)

// imapConn is one client connection: the client's commands go to the mailtest server, rewritten where Gmail
// differs (AUTHENTICATE, X-GM-MSGID, X-GM-LABELS), and its answers come back, rewritten likewise.
type imapConn struct {
	s      *Server
	client net.Conn
	cbr    *bufio.Reader
	back   net.Conn
	bbr    *bufio.Reader

	wmu sync.Mutex // writes to the client

	mu        sync.Mutex
	user      string
	selected  string            // the selected mailbox, as the client named it
	selecting map[string]string // tag → mailbox of a SELECT or EXAMINE in flight
	rewrites  map[string]*rewrite
}

// rewrite is a command answered in Gmail's terms from what the backend answered to another.
type rewrite struct {
	search  string // UID SEARCH X-GM-MSGID: the X-GM-MSGID sought
	matches []string
	folder  string
}

func (s *Server) serveIMAP(client net.Conn) {
	back, err := net.Dial("tcp", s.mail.IMAPAddr())
	if err != nil {
		return
	}
	if !s.track(back) {
		return
	}
	defer s.untrack(back)
	c := &imapConn{s: s, client: client, cbr: bufio.NewReader(client), back: back, bbr: bufio.NewReader(back),
		selecting: map[string]string{}, rewrites: map[string]*rewrite{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.fromBackend()
		client.Close()
	}()
	c.fromClient()
	back.Close()
	client.Close()
	<-done
}

func (c *imapConn) toClient(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.client.SetWriteDeadline(time.Now().Add(time.Minute))
	_, err := c.client.Write(b)
	return err
}

// fromClient forwards the client's commands, segment by segment so that literals flow as they come.
func (c *imapConn) fromClient() {
	for {
		line, n, _, err := imapwire.ReadLine(c.cbr)
		if err != nil {
			return
		}
		if rewritten, handled := c.command(line); handled {
			if rewritten == nil {
				continue
			}
			line = rewritten
		}
		for {
			if _, err := c.back.Write(line); err != nil {
				return
			}
			if n < 0 {
				break
			}
			if _, err := io.CopyN(c.back, c.cbr, n); err != nil {
				return
			}
			if line, n, _, err = imapwire.ReadLine(c.cbr); err != nil {
				return
			}
		}
	}
}

// command looks at the first line of a client command: it answers AUTHENTICATE itself (handled, nil), and
// rewrites Gmail's FETCH and SEARCH items into ones the backend knows.
func (c *imapConn) command(line []byte) ([]byte, bool) {
	fields := strings.Fields(strings.TrimRight(string(line), "\r\n"))
	if len(fields) < 2 {
		return nil, false
	}
	tag, verb := fields[0], strings.ToUpper(fields[1])
	switch {
	case verb == "AUTHENTICATE" && len(fields) >= 3:
		c.authenticate(tag, strings.ToUpper(fields[2]), fields[3:])
		return nil, true
	case (verb == "SELECT" || verb == "EXAMINE") && len(fields) >= 3:
		vals, err := imapwire.Parse(line)
		if err == nil && len(vals) >= 3 {
			c.mu.Lock()
			c.selecting[tag] = vals[2].Text
			c.mu.Unlock()
		}
	case verb == "UID" && len(fields) >= 3 && c.gmail():
		sub := strings.ToUpper(fields[2])
		upper := strings.ToUpper(string(line))
		if sub == "FETCH" && strings.Contains(upper, "X-GM-") {
			c.mu.Lock()
			c.rewrites[tag] = &rewrite{folder: c.selected}
			c.mu.Unlock()
			return []byte(fmt.Sprintf("%s UID FETCH %s (UID BODY.PEEK[HEADER])\r\n", tag, fields[3])), true
		}
		if sub == "SEARCH" && len(fields) == 5 && strings.EqualFold(fields[3], "X-GM-MSGID") {
			c.mu.Lock()
			c.rewrites[tag] = &rewrite{search: fields[4], folder: c.selected}
			c.mu.Unlock()
			return []byte(tag + " UID FETCH 1:* (UID BODY.PEEK[HEADER])\r\n"), true
		}
	}
	return nil, false
}

func (c *imapConn) gmail() bool { return !c.s.cfg.NoGmailExtensions }

// authenticate runs AUTHENTICATE XOAUTH2 or OAUTHBEARER with the client, then signs the backend session in
// with LOGIN; a refused token gets Gmail's error challenge and NO.
func (c *imapConn) authenticate(tag, mech string, rest []string) {
	if mech != "XOAUTH2" && mech != "OAUTHBEARER" {
		_ = c.toClient([]byte(tag + " NO [CANNOT] unsupported mechanism\r\n"))
		return
	}
	var enc string
	if len(rest) > 0 {
		enc = rest[0]
	} else {
		if c.toClient([]byte("+ \r\n")) != nil {
			return
		}
		l, err := c.cbr.ReadString('\n')
		if err != nil {
			return
		}
		enc = strings.TrimSpace(l)
	}
	ir, err := b64.DecodeString(enc)
	var user string
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		user, err = c.s.signIn(ctx, mech, ir)
		cancel()
	}
	if err != nil {
		c.s.log.Debug("gmailtest: imap sign-in refused", "err", err)
		if c.toClient([]byte("+ "+b64.EncodeToString(errorChallenge())+"\r\n")) != nil {
			return
		}
		if _, err := c.cbr.ReadString('\n'); err != nil {
			return
		}
		_ = c.toClient([]byte(tag + " NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"))
		return
	}
	pass, _ := c.s.password(user)
	c.mu.Lock()
	c.user = user
	c.mu.Unlock()
	_, _ = fmt.Fprintf(c.back, "%s LOGIN %s %s\r\n", tag, imapwire.Quote(user), imapwire.Quote(pass))
}

// fromBackend forwards the backend's answers, rewritten: capabilities gain Gmail's, FETCH answers of a
// rewritten command become X-GM-MSGID and X-GM-LABELS, and a rewritten SEARCH gets its SEARCH answer.
func (c *imapConn) fromBackend() {
	for {
		msg, err := imapwire.ReadMessage(c.bbr, 128<<20)
		if err != nil {
			return
		}
		tag := imapwire.Tag(msg)
		msg = c.capabilities(msg)
		c.mu.Lock()
		rw := c.rewrites[tag]
		var pending *rewrite
		for _, r := range c.rewrites {
			pending = r
		}
		if mb, ok := c.selecting[tag]; ok {
			delete(c.selecting, tag)
			if st := statusOf(msg); st == "OK" {
				c.selected = mb
			}
		}
		if rw != nil {
			delete(c.rewrites, tag)
		}
		c.mu.Unlock()
		switch {
		case tag == "*" && pending != nil:
			if out, ok := c.gmailFetch(msg, pending); ok {
				if out == nil {
					continue
				}
				msg = out
			}
		case rw != nil && rw.search != "":
			search := "* SEARCH"
			for _, u := range rw.matches {
				search += " " + u
			}
			msg = append([]byte(search+"\r\n"), msg...)
		}
		if c.toClient(msg) != nil {
			return
		}
	}
}

func statusOf(msg []byte) string {
	f := strings.Fields(string(msg))
	if len(f) < 2 {
		return ""
	}
	return strings.ToUpper(f[1])
}

// gmailFetch turns a backend FETCH answer (UID and header) into Gmail's, or, for a search, notes a match and
// drops it (nil). ok is false when msg is not such an answer.
func (c *imapConn) gmailFetch(msg []byte, rw *rewrite) (out []byte, ok bool) {
	vals, err := imapwire.Parse(msg)
	if err != nil {
		return nil, false
	}
	seq, attrs, isFetch := imapwire.Attrs(vals)
	header, hasHeader := attrs["BODY[HEADER]"]
	if !isFetch || !hasHeader {
		return nil, false
	}
	uid := attrs["UID"].Text
	msgid := msgIDOf([]byte(header.Text))
	if rw.search != "" {
		if msgid == rw.search {
			c.mu.Lock()
			rw.matches = append(rw.matches, uid)
			c.mu.Unlock()
		}
		return nil, true
	}
	labels := c.labelsOf(rw.folder, headerMessageID([]byte(header.Text)))
	c.s.mu.Lock()
	c.s.gmFetch++
	c.s.mu.Unlock()
	return []byte(fmt.Sprintf("* %s FETCH (UID %s X-GM-MSGID %s X-GM-LABELS (%s))\r\n", seq, uid, msgid, strings.Join(labels, " "))), true
}

// labelsOf returns the labels of a message seen in folder: the folder's own, then those AddLabel gave it.
func (c *imapConn) labelsOf(folder, messageID string) []string {
	own := map[string]string{"INBOX": `\Inbox`, "SENT": `\Sent`, "DRAFTS": `\Draft`, "TRASH": `\Trash`, "JUNK": `\Spam`}
	label := func(name string) string {
		if l, ok := own[strings.ToUpper(name)]; ok {
			return l
		}
		return imapwire.Quote(name)
	}
	out := []string{label(folder)}
	seen := map[string]bool{out[0]: true}
	c.mu.Lock()
	user := c.user
	c.mu.Unlock()
	c.s.mu.Lock()
	extra := c.s.labels[user][messageID]
	c.s.mu.Unlock()
	if len(extra) > 0 {
		extra = append([]string{"INBOX"}, extra...)
	}
	for _, e := range extra {
		if l := label(e); !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// capabilities adds Gmail's capabilities to a capability list in msg.
func (c *imapConn) capabilities(msg []byte) []byte {
	s := string(msg)
	upper := strings.ToUpper(s)
	i := strings.Index(upper, "CAPABILITY ")
	if i < 0 || (!strings.HasPrefix(upper, "* CAPABILITY ") && !strings.Contains(upper, "[CAPABILITY ")) {
		return msg
	}
	end := strings.IndexByte(s[i:], ']')
	if end < 0 {
		end = strings.Index(s[i:], "\r\n")
	}
	if end < 0 {
		return msg
	}
	end += i
	list := s[i+len("CAPABILITY ") : end]
	var add []string
	if c.gmail() && !strings.Contains(strings.ToUpper(list), "X-GM-EXT-1") {
		add = append(add, "X-GM-EXT-1")
	}
	if strings.Contains(strings.ToUpper(list), "AUTH=") {
		add = append(add, "AUTH=XOAUTH2", "AUTH=OAUTHBEARER")
		if !strings.Contains(strings.ToUpper(list), "SASL-IR") {
			add = append(add, "SASL-IR")
		}
	}
	if len(add) == 0 {
		return msg
	}
	return []byte(s[:end] + " " + strings.Join(add, " ") + s[end:])
}
