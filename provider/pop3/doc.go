// Package pop3 is the provider for POP3 servers: incoming email only, read with a small
// POP3 client of its own (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH PLAIN).
//
// # The client
//
// Client is usable on its own: Dial, DialTLS or NewClient, then one method per
// command (Capabilities, StartTLS, User, Pass, AuthPlain, Stat, List, Uidl, Top, Retr,
// Dele, Rset, Noop, Quit). TopMany and RetrMany read many messages, pipelining their
// commands (RFC 2449 PIPELINING) when the server offers it, with a bounded number of
// them unanswered, so that the client never blocks writing to a server that waits for
// it to read. Every method takes a context whose deadline bounds it and
// whose cancellation aborts it; Client.Timeout bounds each wait for the server.
// Response lines are bounded (MaxLineLength), messages are dot-unstuffed and bounded
// (Client.MaxMessageSize), and an -ERR answer is an *Error carrying the command's verb
// and the RFC 2449 response code, never the command's arguments.
//
// # The provider
//
// NewDialer returns a provider.Dialer. Its connections read a mailbox's maildrop over
// the profile's incoming endpoint: implicit TLS (POP3S), STLS (required: a server that
// does not offer it is a permanent error, and credentials are never sent in
// plaintext), or plaintext only when the endpoint says crmsync.SecurityPlaintext.
// Certificates are verified unless the endpoint sets InsecureSkipVerify.
//
// POP3 is email only. Test of the ACT workload fails with crmsync.ErrNotSupported. For
// outgoing email a POP3 profile sends through the same SMTP sender as IMAP profiles
// (provider/smtp), with its outgoing endpoint, or through a sender plugged in with
// Config.Outgoing: Dial then returns a *SendingConn, which delegates Send and FindSent
// to it; for a profile without an outgoing endpoint and no sender plugged in, Dial
// returns a *Conn, which is not a provider.OutgoingMail, and Test of the outgoing
// workload fails with crmsync.ErrNotSupported.
//
// A POP3 mailbox has no Sent folder, so the duplicate-send guard has nothing to look
// in: with the SMTP sender, FindSent fails with a permanent error wrapping
// crmsync.ErrNotSupported, and the engine then refuses to resend an email whose
// outcome is unknown (a connection that broke while the message was being submitted)
// rather than risk sending it twice. A Send error that wraps smtp.ErrNotSubmitted
// tells the engine that the email definitely did not go out.
//
// # Incoming
//
// Messages are parsed by provider/mailparse, leniently: only a message without a
// readable header fails, and it is reported in Batch.Failed.
//
// POP3 has no identity for a message across sessions but its UIDL, and no dates but
// the message's own header fields. So the cursor of FetchIncoming is the set of UIDLs
// already looked at (screened in, screened out or failed), sorted, front-coded and
// DEFLATE-compressed (a fraction of a byte to a few bytes per message, depending on
// how the server makes its UIDLs), and pruned of the UIDLs no longer on the server;
// messages are left on the server, never deleted. A message's ReceivedAt is the
// date of its newest Received field (the one the delivering server added on top),
// else its Date field, else the time it was first seen; FetchRequest.Since is compared
// with it.
//
// A POP3 session sees the maildrop as it was at login, so each FetchIncoming opens a
// session, reads UIDL and LIST once, the headers of new messages with TOP n 0, the
// accepted messages with RETR, and QUITs; after a batch with More, the session and its
// listing are kept for the next batch. Where the server offers PIPELINING, the TOP
// commands of a batch go out together, then its RETR commands: a batch costs a few
// round trips, not two per message. The messages are parsed on other goroutines while
// the next ones arrive.
//
// Errors are classified at the boundary: credentials refused ([AUTH], or -ERR to
// USER/PASS) are auth errors; [IN-USE], [SYS/TEMP] and network failures transient; a
// server that says it has too many connections, or [LOGIN-DELAY], throttled; a
// refused STLS, a certificate that fails verification and a server without UIDL
// permanent.
package pop3
