// Package crmsync keeps a CRM's records in step with its users' mailboxes: the job that
// Dynamics 365 calls server-side synchronization.
//
// Email arrives in a mailbox and becomes a CRM email activity (the incoming workload); CRM
// email that the host puts in Pending Send goes out through the mailbox (the outgoing
// workload); appointments, contacts and tasks sync (the ACT workload: today from the
// mailbox to the CRM; the CRM-to-mailbox direction is not built yet). Each
// mailbox runs each workload on its own schedule.
//
// # The pieces
//
// This root package is the vocabulary every other package speaks: server profiles and
// mailboxes, emails and their attachments, contacts, appointments and tasks, workloads
// and their statuses, alerts, and the error kinds that decide what the engine does next.
// It does no I/O.
//
//   - package schedule holds the Clock (real or fake) and the cadence policy: when a
//     mailbox-workload runs next, and how failures back off.
//   - package provider defines what a mail server connection can do: a base Provider and
//     optional capabilities (IncomingMail, OutgoingMail, ItemSync, FolderMover) found by type
//     assertion, a Throttler shared by every connection to one server profile, and error
//     classification. Sub-packages implement it for real servers; provider/providertest is
//     a scriptable fake and the conformance suite every provider runs.
//   - package crmstore defines the Store, the host's persistence. crmstore/memstore is the
//     in-memory reference; crmstore/storetest is the conformance suite a host's own Store
//     runs with one call.
//   - package syncer is the reference Engine: the mailbox registry and its mapping rules,
//     Test & Enable, per-workload queues and workers, cycles, error handling and alerts.
//
// # The promises
//
// A message is never tracked twice and never lost: the emails an incoming cycle tracks and
// the provider cursor that follows them are committed to the Store in one call, so a crash
// replays a cycle rather than losing or doubling it, and the Store refuses a second email
// with the same provider identity or Message-ID in a mailbox. An outgoing email is never
// sent twice: it is marked Sending before it is submitted, and an email found in Sending
// after a crash is looked up in the mailbox's Sent folder before any retry.
//
// # Errors
//
// Every error a provider returns carries a Kind (see [KindOf]): auth and permanent errors
// disable the workload at once with an alert, until Test & Enable passes again; throttled
// and transient errors are retried with backoff, never sooner than the server's
// Retry-After, and become permanent after the policy's retry limit; an expired cursor
// starts a full resync that tracks nothing twice.
package crmsync
