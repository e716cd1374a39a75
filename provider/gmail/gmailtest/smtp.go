package gmailtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/crmsync/crmsync/provider/mailtest"
)

// smtpSession is one SMTP connection: OAuth sign-in, then each message relayed to the mailtest server's
// SMTP as the signed-in user, and filed in their Sent folder.
type smtpSession struct {
	s    *Server
	user string
	back *smtp.Client
}

var _ smtp.AuthSession = (*smtpSession)(nil)

// AuthMechanisms offers Gmail's OAuth mechanisms.
func (ss *smtpSession) AuthMechanisms() []string { return []string{"XOAUTH2", "OAUTHBEARER"} }

// Auth returns the server side of mech, which signs the session in.
func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech != "XOAUTH2" && mech != "OAUTHBEARER" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return &oauthServer{mech: mech, signIn: func(ir []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		user, err := ss.s.signIn(ctx, mech, ir)
		if err == nil {
			ss.user = user
		}
		return err
	}}, nil
}

// oauthServer is the server side of XOAUTH2 and OAUTHBEARER: a refused token gets the error challenge, and
// the client's answer to it ends the exchange with a failure.
type oauthServer struct {
	mech   string
	signIn func(ir []byte) error
	failed error
	asked  bool
}

// Next checks the initial response, or ends a refused exchange after the client's answer to the error
// challenge.
func (o *oauthServer) Next(response []byte) ([]byte, bool, error) {
	if o.failed != nil {
		return nil, true, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
			Message: "Username and Password not accepted"}
	}
	if response == nil && !o.asked {
		o.asked = true
		return []byte{}, false, nil
	}
	if err := o.signIn(response); err != nil {
		o.failed = err
		return errorChallenge(), false, nil
	}
	return nil, true, nil
}

var errAuthFirst = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication Required"}

// backend opens the relay to the mailtest server, signed in as the user.
func (ss *smtpSession) backend() (*smtp.Client, error) {
	if ss.back != nil {
		return ss.back, nil
	}
	pass, ok := ss.s.password(ss.user)
	if !ok {
		return nil, errAuthFirst
	}
	c, err := smtp.Dial(ss.s.mail.SMTPAddr())
	if err != nil {
		return nil, err
	}
	if err := c.Auth(sasl.NewPlainClient("", ss.user, pass)); err != nil {
		c.Close()
		return nil, err
	}
	ss.back = c
	return c, nil
}

// Mail starts a message on the relay, unless the user reached Config.DailyLimit.
func (ss *smtpSession) Mail(from string, opts *smtp.MailOptions) error {
	if ss.user == "" {
		return errAuthFirst
	}
	if lim := ss.s.cfg.DailyLimit; lim > 0 && ss.s.sentToday(ss.user) >= lim {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 4, 5},
			Message: "Daily user sending limit exceeded. For more information on Gmail's sending limits go to https://support.google.com/a/answer/166852"}
	}
	c, err := ss.backend()
	if err != nil {
		return err
	}
	return c.Mail(from, opts)
}

// Rcpt adds a recipient on the relay.
func (ss *smtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if ss.back == nil {
		return errAuthFirst
	}
	return ss.back.Rcpt(to, opts)
}

// Data relays the message, counts it, and files it in the sender's Sent folder.
func (ss *smtpSession) Data(r io.Reader) error {
	if ss.back == nil {
		return errAuthFirst
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	w, err := ss.back.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.sent[ss.user] = append(ss.s.sent[ss.user], ss.s.cfg.Clock.Now())
	ss.s.mu.Unlock()
	if !ss.s.cfg.NoSentCopies {
		// As Gmail does: the sender's copy, without the Received fields a delivery would add.
		if err := ss.s.mail.AppendAt(ss.user, mailtest.Sent, bytes.TrimLeft(raw, "\r\n"), ss.s.cfg.Clock.Now()); err != nil {
			ss.s.log.Debug("gmailtest: filing the Sent copy failed", "err", err)
		}
	}
	return nil
}

// Reset aborts the message on the relay.
func (ss *smtpSession) Reset() {
	if ss.back != nil {
		_ = ss.back.Reset()
	}
}

// Logout ends the relay session.
func (ss *smtpSession) Logout() error {
	if ss.back != nil {
		err := ss.back.Quit()
		if err != nil && !errors.Is(err, io.EOF) {
			ss.back.Close()
		}
		ss.back = nil
	}
	return nil
}

// sentToday counts the user's submissions in the last 24 hours.
func (s *Server) sentToday(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff := s.cfg.Clock.Now().Add(-24 * time.Hour)
	n := 0
	for _, t := range s.sent[strings.ToLower(user)] {
		if t.After(cutoff) {
			n++
		}
	}
	return n
}
