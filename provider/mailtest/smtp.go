package mailtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Limits of the SMTP server.
const (
	maxMessageBytes = 64 << 20
	maxRecipients   = 100
)

func (s *Server) newSMTPServer() *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{srv: s, conn: c}, nil
	}))
	srv.Domain = s.cfg.Domain
	srv.MaxMessageBytes = maxMessageBytes
	srv.MaxRecipients = maxRecipients
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.AllowInsecureAuth = s.cfg.TLS == NoTLS
	srv.ErrorLog = logAdapter{log: s.log, server: "smtp"}
	if s.cfg.TLS == StartTLS {
		srv.TLSConfig = s.tlsCert
	}
	return srv
}

var (
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errNoSuchUser   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errNoRecipients = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
)

// smtpSession is one SMTP connection: a submission server that accepts mail from
// authenticated users for local recipients only.
type smtpSession struct {
	srv  *Server
	conn *smtp.Conn

	user  *user // after AUTH
	from  string
	rcpts []*user
}

var _ smtp.AuthSession = (*smtpSession)(nil)

// AuthMechanisms returns the configured mechanisms.
func (sess *smtpSession) AuthMechanisms() []string { return sess.srv.cfg.SMTPAuthMechanisms }

// Auth returns the SASL server for mech.
func (sess *smtpSession) Auth(mech string) (sasl.Server, error) {
	offered := false
	for _, m := range sess.srv.cfg.SMTPAuthMechanisms {
		offered = offered || strings.EqualFold(m, mech)
	}
	if !offered {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	check := func(username, password string) error {
		u := sess.srv.lookup(username)
		if u == nil || u.mem.Login(u.address, password) != nil {
			return smtp.ErrAuthFailed
		}
		sess.user = u
		return nil
	}
	if strings.EqualFold(mech, sasl.Login) {
		return &loginServer{check: check}, nil
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && !strings.EqualFold(identity, username) {
			return smtp.ErrAuthFailed
		}
		return check(username, password)
	}), nil
}

// Mail starts a transaction; the client must have authenticated.
func (sess *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if sess.user == nil {
		return errAuthRequired
	}
	sess.from = from
	sess.rcpts = nil
	return nil
}

// Rcpt accepts local users and refuses everyone else with 550.
func (sess *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if sess.user == nil {
		return errAuthRequired
	}
	u := sess.srv.lookup(to)
	if u == nil {
		return errNoSuchUser
	}
	sess.rcpts = append(sess.rcpts, u)
	return nil
}

// Data reads the message and delivers it to every recipient's INBOX.
func (sess *smtpSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(sess.rcpts) == 0 {
		return errNoRecipients
	}
	now := sess.srv.cfg.Clock.Now()
	id := randomToken()[:12]
	for _, rc := range sess.rcpts {
		msg := sess.trace(rc.address, id, now, raw)
		if _, err := rc.mem.Append(Inbox, literal{bytes.NewReader(msg)}, &imap.AppendOptions{Time: now}); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Delivery failed: " + err.Error()}
		}
	}
	sess.srv.count(func(st *Stats) { st.SMTPAccepted++ })
	sess.rcpts = nil
	return nil
}

// trace prepends the fields a delivering MTA adds (RFC 5321 section 4.4).
func (sess *smtpSession) trace(rcpt, id string, now time.Time, raw []byte) []byte {
	helo := sess.conn.Hostname()
	ip := "unknown"
	if addr, ok := sess.conn.Conn().RemoteAddr().(*net.TCPAddr); ok {
		ip = addr.IP.String()
	}
	with := "ESMTPA"
	if _, isTLS := sess.conn.TLSConnectionState(); isTLS {
		with = "ESMTPSA"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", sess.from)
	fmt.Fprintf(&b, "Delivered-To: %s\r\n", rcpt)
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s with %s id %s\r\n\tfor <%s>; %s\r\n",
		helo, ip, sess.srv.cfg.Domain, with, id, rcpt, now.Format(time.RFC1123Z))
	b.Write(raw)
	return b.Bytes()
}

// Reset forgets the current transaction.
func (sess *smtpSession) Reset() {
	sess.from = ""
	sess.rcpts = nil
}

// Logout ends the session.
func (sess *smtpSession) Logout() error { return nil }

// loginServer is the server side of the obsolete LOGIN SASL mechanism, which go-sasl
// implements for clients only.
type loginServer struct {
	check    func(username, password string) error
	username []byte
	step     int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		l.username = response
		l.step = 2
		return []byte("Password:"), false, nil
	case 1:
		l.username = response
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(string(l.username), string(response))
	}
	return nil, false, errors.New("sasl: unexpected client response")
}
