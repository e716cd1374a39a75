// Package smtp submits CRM email over SMTP: the one sender every provider that sends
// through an SMTP server uses (provider/imap, which then saves a copy to the Sent
// folder, and provider/pop3, whose mailboxes have no Sent folder).
//
// Compose builds the RFC 5322 message of a crmsync.Email. A Sender, made by NewSender
// from an endpoint, credentials (or a SASL client factory, for XOAUTH2 and the like), a
// TLS configuration, a local name, a timeout and a clock, submits it: it connects on
// first use (implicit TLS, STARTTLS — required when asked for — or plaintext),
// authenticates with AUTH PLAIN, or LOGIN when the server offers only that, and keeps
// the session for the next message until Close.
//
// # Errors
//
// Every error is a classified *crmsync.Error: a refused login (535, 534, 530) is an auth
// error; a 4xx answer is transient, or throttled when the server says it limits the
// rate; a 5xx answer to a recipient or to the message is permanent; a certificate that
// fails verification is permanent; a refused, reset or timed-out connection is
// transient.
//
// What matters most to the engine is whether the message may have gone out. A failure
// before the server was sent the message (connecting, logging in, MAIL, RCPT, the DATA
// command), and a refusal the server answers to the message's end, wrap
// ErrNotSubmitted: the email definitely did not go out and can be sent again. A
// connection that breaks while the message is being sent, or before the server answers
// its end, leaves the outcome unknown: the error is transient and does not wrap
// ErrNotSubmitted, and the caller must check before it sends again (provider/imap
// looks for the Message-ID in the Sent folder).
package smtp
