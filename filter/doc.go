// Package filter decides what the engine tracks and how a tracked email is linked to CRM
// records: the incoming processing options, correlation, party resolution, folder
// tracking rules, and the synchronization filters of appointments, contacts and tasks.
//
// # Which incoming messages are tracked
//
// A Screener (its Screen method is the engine's syncer.Screener) decides from headers
// only, for a batch of messages that one mailbox received, in this order:
//
//  1. Duplicate: a Message-ID the mailbox already tracked is refused. (With
//     Config.OneActivity, a Message-ID tracked by any mailbox.) The Store refuses a
//     second copy by provider identity too.
//  2. Bypass: a message the user asked to track (Config.Manual) or that sits in a
//     tracked folder (Mailbox.TrackedFolders, FolderRules) is tracked whatever the
//     incoming option.
//  3. Options: the message is offered to the receiving mailbox, then to the mailbox of
//     each recipient that has one (Mailboxes); the first whose IncomingOption accepts
//     it decides. When none accepts, the first refusal by a mailbox that tracks
//     email at all gives the reason.
//
// The options, with the Reason each gives:
//
//   - IncomingAll accepts (accept all).
//   - IncomingReplies accepts a message that correlates with a CRM email
//     (correlation match, else no correlation match).
//   - IncomingFromCRM accepts a sender that resolves to a lead, contact or account
//     (sender match); it refuses one that resolves to a user or queue (internal
//     email), or to nothing, or has no valid address (invalid sender).
//   - IncomingFromEnabled accepts a sender that resolves to any email-enabled record
//     but a user or queue, with the same refusals.
//   - IncomingNone accepts nothing (no recipient match, when no candidate mailbox
//     tracks email at all).
//
// Every lookup runs once per batch: one Index call for the Message-IDs and thread
// headers (plus one per further correlation method, for the messages still open), one
// Mailboxes call, one Directory call.
//
// # Correlation
//
// A Correlator links a message to the CRM email it answers, trying in order: its
// In-Reply-To, then its References (newest first), against stored Message-IDs; the
// tracking token in its subject (TokenConfig); the conversation GUID of its Outlook
// Thread-Index; and, when turned on, smart matching: the same subject hash after
// stripping reply prefixes, and at least two of the same recipient hashes, among the
// emails of the last 90 days. The Match records the method, as crmsync.Correlation.
// EmailIndex is the lookup it needs (a crmstore.Store has it); TokenIndex,
// ConversationIndex and SubjectIndex are optional lookups found by type assertion, and
// MemIndex implements them all.
//
// Outgoing CRM email is made easy to correlate: NewMessageID gives a globally unique
// Message-ID, TokenGen issues tracking tokens and TokenConfig.Stamp puts them in the
// subject, NewThreadIndex starts a conversation Outlook replies will keep.
//
// # Linking a tracked email
//
// Screener.Resolve sets a tracked email's regarding record (a folder rule's, else one
// set by hand, else the correlated email's), resolves its addresses to CRM records
// through the Directory (user, queue, contact, account, lead, other; the mailbox
// owner's record first; more than 100 matches stay unresolved), and says which
// mailboxes should hold an activity: email between two CRM users is the sender's and
// the recipient's activity unless Config.OneActivity is set.
//
// # Synchronization filters
//
// A Filter selects the CRM records of one kind that sync to a user's mailbox, in a
// small typed language (see Filter):
//
//	owner = @me and (status != "completed" or due >= today)
//
// Filters are evaluated in memory against crmsync.Item (Filter.Match, Set.Match) and
// translated to parameterized SQL for SQLite and PostgreSQL (ToSQL).
package filter
