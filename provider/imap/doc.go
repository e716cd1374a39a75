// Package imap is the provider for IMAP/SMTP servers: incoming email over IMAP, outgoing
// email over SMTP, with a copy of each sent message appended to the mailbox's Sent folder.
//
// A Dialer opens one *Conn per mailbox and cycle. Dial does no I/O: the IMAP session is
// opened and logged in on the first call that needs it, the SMTP session on the first
// Send (or Test of the outgoing workload), so an outgoing cycle without a Sent copy never
// touches IMAP. Every connection honours the profile's connection timeout and the
// endpoint's security: implicit TLS (verified; Endpoint.InsecureSkipVerify turns that
// off), STARTTLS (required: a server that does not offer it is an error) or plaintext.
//
// # Incoming
//
// FetchIncoming reads INBOX and the request's tracked folders. Its cursor records, per
// folder, the UIDVALIDITY, the highest UID looked at and the UIDNEXT seen when the
// folder was last read to its end (and HIGHESTMODSEQ where the server has CONDSTORE).
// Each cycle first asks STATUS of every folder, all pipelined in one round trip; a folder
// whose UIDVALIDITY and UIDNEXT did not change is not opened at all. A cycle with no new
// mail on a fresh connection therefore costs, whatever the size of the mailbox and the
// number of tracked folders: the server's greeting, LOGIN (whose answer carries the
// capabilities, so no CAPABILITY command follows), one pipelined batch of STATUS
// commands, and LOGOUT when the Conn is closed.
//
// A changed folder is opened read-only (EXAMINE), searched for UIDs above the cursor (and
// received since the request's Since date), and fetched headers first, with BODY.PEEK so
// that \Seen is never set: the request's Screen sees header-only emails, and only the
// accepted ones are fetched in full; four more round trips per changed folder. The cursor
// then covers every message looked at, accepted or not.
//
// A folder with more new mail than one call takes is read in batches, one
// FetchIncoming after another on the same Conn (an engine cycle). The next batch
// continues from the UIDs the search found, without NOOP, STATUS or a new search, and
// each batch asks ahead for the next one, pipelined with its own FETCHes: the next
// headers, parsed while the current bodies arrive; or, while the screen accepts every
// message (an initial ingest), the next whole messages, with their dates and sizes, so
// that the server streams while the engine stores a batch and reads each message once.
// Config.PrefetchBytes bounds what a Conn keeps ahead. So a folder read in batches costs
// about one round trip per batch, and the screen still sees every header before
// anything is tracked. With Config.ScreenUsesSession the next batch is asked for only
// once this one is screened, so that nothing of the Conn's is in flight while the
// request's Screen runs. A UID that an answer leaves out is asked for again by its
// batch, never taken for expunged. Whole messages are parsed on GOMAXPROCS goroutines while the
// next ones arrive, into buffers that are recycled.
//
// When a folder's UIDVALIDITY changes, the folder is read again from its first message,
// without a cursor-expired error: the Store refuses the messages it already tracked by
// their Message-ID, so nothing is tracked twice.
//
// Messages are parsed by provider/mailparse. A message that cannot be read (no header
// at all) is reported in Batch.Failed, never as an error of the batch. The parser is
// lenient otherwise: malformed header lines, sloppy addresses, unknown charsets, broken
// MIME structure and undecodable attachments become notes on the email (Email.Notes)
// rather than failures.
//
// # Outgoing
//
// Send builds the RFC 5322 message and submits it with the SMTP sender of provider/smtp
// (AUTH PLAIN, or LOGIN when the server offers only that) to the To, Cc and Bcc
// recipients (Bcc is not written in the message), on the profile's outgoing endpoint,
// then appends a copy, marked \Seen and keeping its Bcc field as mail clients do, to the
// Sent folder: the mailbox marked \Sent (SPECIAL-USE), else the folder named by
// Config.SentFolder or a usual name ("Sent Items", …), created if missing. A failed copy
// is logged and reported by SendReceipt.Copied, never as an error, since the message did
// go out and an error would make the engine send it again. A Send error that wraps
// smtp.ErrNotSubmitted says the message definitely did not go out. FindSent looks for a
// Message-ID in the Sent folder, the duplicate-send guard.
//
// The copy is appended after the submission, so a connection that breaks after the
// final "." of DATA but before the server's answer leaves no copy: FindSent then says
// not found although the server may have delivered the message. SMTP offers no way to
// close that window. A profile without Sent copies cannot use the guard at all: its
// FindSent fails with an error wrapping crmsync.ErrNotSupported, and the engine then
// refuses to resend an email whose outcome is unknown rather than risk sending it
// twice.
package imap
