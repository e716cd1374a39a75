// Package gmail is the provider for Gmail and Google Workspace mailboxes: incoming email over IMAP,
// outgoing over SMTP, both signed in with OAuth 2.0, with Gmail's message identity and labels, and with
// Gmail's limits as the defaults that keep a mailbox within them.
//
// # Signing in
//
// The host registers an OAuth client with Google and gives the Dialer its *oauth2.Config (scope Scope,
// https://mail.google.com/). Each mailbox holds the refresh token of its user's consent in
// Credentials.RefreshToken (the profile's CredentialSource is crmsync.CredentialsOAuthGrant; NewProfile
// makes such a profile); the example in examples/gmail shows the consent URL, the callback that exchanges
// the code, and storing the token. The Dialer keeps each mailbox's access token in memory and refreshes it
// when less than Config.RefreshMargin of its life is left, one refresh per mailbox at a time, whatever the
// number of connections. When the token endpoint rotates the refresh token, the new one is saved through
// Config.Tokens (StoreTokenSaver writes it into the mailbox's credentials with the Store's UpdateMailbox).
//
// IMAP and SMTP sign in with SASL XOAUTH2 (https://developers.google.com/workspace/gmail/imap/xoauth2-protocol),
// or OAUTHBEARER (RFC 7628), whichever of Config.Mechanisms the server offers first. A token the server
// refuses is refreshed and tried once more.
//
// # Errors
//
// A refresh refused with invalid_grant (the user revoked the app's access, changed their password, or the
// grant expired) or invalid_scope, and a mailbox without a refresh token, are crmsync.KindAuth errors that
// wrap ErrReconnect, whose message tells the user to reconnect the Gmail account: the engine disables the
// workload at once with an error alert, until a new consent and Test & Enable. A token endpoint that cannot
// be reached or answers 5xx is crmsync.KindTransient; one that answers 429 is crmsync.KindThrottled with its
// Retry-After (and pauses the whole profile, whose OAuth client it limits); one that refuses the OAuth
// client is crmsync.KindPermanent. IMAP and SMTP errors are classified as provider/imap classifies them.
//
// # Gmail's extensions
//
// Where the IMAP server announces X-GM-EXT-1 (https://developers.google.com/workspace/gmail/imap/imap-extensions),
// a message's ProviderID is "gm:" and its X-GM-MSGID, which is the same under every label: a message moved
// from one label to another, or found under two tracked labels, is one message, whether or not it has a
// Message-ID. Labels are IMAP folders, so a tracked folder is a label: a message is reported under the
// first tracked label it carries (X-GM-LABELS), even when it was found in the inbox. Gmail files every
// message sent through its SMTP in Sent Mail, so no copy is appended there. Without X-GM-EXT-1 the provider
// is provider/imap: the same identities, cursor, folders and Sent copy.
//
// # Limits
//
// Gmail's documented limits are the defaults (DefaultLimits; Config.Limits overrides them per mailbox):
//
//   - Google Workspace: 2,000 messages per user per day (500 on a trial account), 10,000 recipients per
//     day, and 100 recipients per message sent over SMTP by an IMAP or POP user; "limits per day are applied
//     over a rolling 24-hour period". Source: "Gmail sending limits in Google Workspace",
//     https://support.google.com/a/answer/166852.
//   - Consumer accounts (gmail.com, googlemail.com): 500 messages per day, and 100 recipients per message
//     from a POP or IMAP client. Source: Gmail Help, "You have reached a limit for sending mail",
//     https://support.google.com/mail/answer/22839 (an account that sends to more than 500 recipients is
//     blocked for up to 24 hours; a POP or IMAP client may address 100 people at a time). 500 a day is also
//     the Workspace page's figure for trial accounts.
//   - IMAP: 15 simultaneous connections per account. Google's help no longer states a figure (its 2008 page,
//     http://mail.google.com/support/bin/answer.py?answer=97150, said 10); 15 is the figure mail clients
//     report for Gmail's "Too many simultaneous connections", e.g. Lifewire's "Know the Simultaneous Gmail
//     IMAP Connection Limit" (http://email.about.com/od/gmailtips/fl/Know-the-Simultaneous-Gmail-IMAP-Connection-Limit.htm).
//
// The Dialer counts each mailbox's sends over the last 24 hours (per minute, rounding against the
// mailbox). A Conn is a provider.SendQuota: SendAllowance says how many messages may go now, and when
// the next may when none can, so the engine leaves a backlog larger than the day's limit in Pending Send
// and comes back when the window frees: a backlog drains over the following days without failures, alerts
// or lost email. Send itself refuses a message over the limit with a crmsync.KindThrottled error whose
// RetryAfter is the time until the window frees and which wraps ErrSendingLimit and
// provider.ErrNotSubmitted (the message did not go out: the engine puts it back in Pending Send). Google's
// own refusal ("550 5.4.5 Daily user sending limit exceeded", which mail sent by the user's other clients,
// or by this process before a restart, can bring about) is reported the same way and holds the mailbox back
// for Config.ServerLimitPause. A message with more recipients than Gmail's SMTP takes fails permanently.
// The Dialer also holds at most Config.ConnectionsPerAccount IMAP connections to one account at once.
//
// The Dialer is a provider.ThrottlerMaker: each Gmail profile's Throttler caps the profile's connections
// (MaxConnections) and pauses them all for a throttled error of the profile (the token endpoint's 429), but
// not for an account's own limit, which holds back that mailbox only.
//
// # How it is built
//
// A Conn delegates the IMAP and SMTP work to provider/imap, which signs in with LOGIN or PLAIN only and has
// no hook for another mechanism. Until it has one, each Conn runs a bridge on two loopback ports: provider/imap
// connects to them with a one-time secret as its password, and the bridge opens the real sessions, signs
// in with XOAUTH2 or OAUTHBEARER, and then passes the bytes through. On the IMAP session the bridge also
// sends the commands of Gmail's extensions (UID FETCH X-GM-MSGID X-GM-LABELS, UID SEARCH X-GM-MSGID), which
// go-imap's client cannot, between two of provider/imap's commands.
//
// provider/gmail/gmailtest is an in-process stand-in for Gmail (OAuth sign-in, X-GM-EXT-1, Sent Mail
// filing, the daily limit's refusal) for tests and examples; internal/testenv has an OAuth authorization
// server and a Dovecot whose oauth2 passdb trusts it, for the full suite.
package gmail
