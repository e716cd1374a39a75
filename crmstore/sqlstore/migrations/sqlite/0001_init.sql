-- crmsync sqlstore schema, version 1 (SQLite).
-- Times are INTEGER microseconds since the Unix epoch; lists are JSON text (NULL when
-- empty); secrets are AES-256-GCM sealed BLOBs (see secrets.go).

-- The fencing tokens of leases: one counter for the whole database, so a token is never
-- handed out twice, not even to a mailbox mapped again after it was deleted.
CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('lease_token', 0);

CREATE TABLE profiles (
	id                  TEXT PRIMARY KEY,
	name                TEXT NOT NULL,
	kind                INTEGER NOT NULL,
	owner_id            TEXT NOT NULL,
	incoming_host       TEXT NOT NULL,
	incoming_port       INTEGER NOT NULL,
	incoming_security   INTEGER NOT NULL,
	incoming_insecure   INTEGER NOT NULL,
	outgoing_host       TEXT NOT NULL,
	outgoing_port       INTEGER NOT NULL,
	outgoing_security   INTEGER NOT NULL,
	outgoing_insecure   INTEGER NOT NULL,
	credential_source   INTEGER NOT NULL,
	username            TEXT NOT NULL,
	password            BLOB,
	refresh_token       BLOB,
	secret_key          TEXT,
	max_connections     INTEGER NOT NULL,
	min_poll_interval   INTEGER NOT NULL, -- nanoseconds
	connection_timeout  INTEGER NOT NULL, -- nanoseconds
	process_email_from  INTEGER NOT NULL,
	move_failed         INTEGER NOT NULL,
	keep_sent_copy      INTEGER,          -- NULL: the default (on)
	max_attachment_size INTEGER NOT NULL
);
CREATE INDEX profiles_secret_key ON profiles (secret_key) WHERE secret_key IS NOT NULL;

CREATE TABLE mailboxes (
	id                  TEXT PRIMARY KEY,
	address             TEXT NOT NULL UNIQUE, -- lower-cased
	owner_kind          INTEGER NOT NULL,
	owner_id            TEXT NOT NULL,
	profile_id          TEXT NOT NULL,
	approval            INTEGER NOT NULL,
	process_email_after INTEGER NOT NULL,
	username            TEXT NOT NULL,
	password            BLOB,
	refresh_token       BLOB,
	secret_key          TEXT,
	incoming_option     INTEGER NOT NULL,
	tracked_folders     TEXT,
	UNIQUE (owner_kind, owner_id)
);
CREATE INDEX mailboxes_profile ON mailboxes (profile_id, id);
CREATE INDEX mailboxes_secret_key ON mailboxes (secret_key) WHERE secret_key IS NOT NULL;

-- One row per mailbox and workload: the workload's state, its schedule, its lease and
-- its sync state. The runnable ones (method 1, server-side sync; test 1, passed) that
-- are scheduled are in the index below, by next run: ClaimDue reads one range of it
-- whatever the number of mailboxes. Whether a row is held is checked on the row, not
-- in the index, so that a claim (which changes only lease columns) is an update in
-- place (a HOT update on PostgreSQL) that touches no index.
CREATE TABLE mailbox_workloads (
	mailbox_id      TEXT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
	workload        INTEGER NOT NULL,
	method          INTEGER NOT NULL,
	test            INTEGER NOT NULL,
	tested_at       INTEGER NOT NULL,
	test_error      TEXT NOT NULL,
	status          INTEGER NOT NULL,
	status_at       INTEGER NOT NULL,
	last_error      TEXT NOT NULL,
	last_error_kind INTEGER NOT NULL,
	next_run        INTEGER,
	lease_owner     TEXT,              -- NULL: no one holds it
	lease_token     INTEGER NOT NULL DEFAULT 0,
	lease_expires   INTEGER,
	cursor          BLOB,
	failures        INTEGER NOT NULL DEFAULT 0,
	load            REAL NOT NULL DEFAULT 0,
	PRIMARY KEY (mailbox_id, workload)
) WITHOUT ROWID;
CREATE INDEX mailbox_workloads_runnable ON mailbox_workloads (workload, next_run, mailbox_id)
	WHERE next_run IS NOT NULL AND method = 1 AND test = 1;

CREATE TABLE emails (
	id                TEXT PRIMARY KEY,
	mailbox_id        TEXT NOT NULL,
	direction         INTEGER NOT NULL,
	status            INTEGER NOT NULL,
	message_id        TEXT NOT NULL,
	in_reply_to       TEXT NOT NULL,
	refs              TEXT,
	thread_index      TEXT NOT NULL,
	provider_id       TEXT NOT NULL,
	folder            TEXT NOT NULL,
	from_name         TEXT NOT NULL,
	from_email        TEXT NOT NULL,
	to_addrs          TEXT,
	cc_addrs          TEXT,
	bcc_addrs         TEXT,
	reply_to          TEXT,
	subject           TEXT NOT NULL,
	text_body         TEXT NOT NULL,
	html_body         TEXT NOT NULL,
	size              INTEGER NOT NULL,
	sent_at           INTEGER NOT NULL,
	received_at       INTEGER NOT NULL,
	regarding_id      TEXT NOT NULL,
	correlation       INTEGER NOT NULL,
	delivery_attempts INTEGER NOT NULL,
	failure_reason    TEXT NOT NULL,
	notes             TEXT,
	attachments       INTEGER NOT NULL, -- rows in email_attachments
	created_at        INTEGER NOT NULL,
	modified_at       INTEGER NOT NULL
);
-- Never the same message twice in one mailbox. The Message-ID comes first so that the
-- same index finds a message in any mailbox (EmailsByMessageID).
CREATE UNIQUE INDEX emails_provider_id ON emails (mailbox_id, provider_id) WHERE provider_id <> '';
CREATE UNIQUE INDEX emails_message_id ON emails (message_id, mailbox_id) WHERE message_id <> '';
CREATE INDEX emails_mailbox ON emails (mailbox_id, created_at, id);
CREATE INDEX emails_created ON emails (created_at, id);
CREATE INDEX emails_outbox ON emails (mailbox_id, created_at, id) WHERE status IN (6, 7);

CREATE TABLE email_attachments (
	email_id     TEXT NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
	pos          INTEGER NOT NULL,
	name         TEXT NOT NULL,
	content_type TEXT NOT NULL,
	content_id   TEXT NOT NULL,
	size         INTEGER NOT NULL,
	content      BLOB,
	skipped      INTEGER NOT NULL,
	skip_reason  TEXT NOT NULL,
	PRIMARY KEY (email_id, pos)
) WITHOUT ROWID;

CREATE TABLE items (
	mailbox_id  TEXT NOT NULL,
	kind        INTEGER NOT NULL,
	provider_id TEXT NOT NULL,
	record_id   TEXT NOT NULL,
	change_key  TEXT NOT NULL,
	modified_at INTEGER NOT NULL,
	data        TEXT NOT NULL, -- JSON: the appointment, contact or task
	PRIMARY KEY (mailbox_id, kind, provider_id)
) WITHOUT ROWID;

CREATE TABLE alerts (
	id         TEXT PRIMARY KEY,
	level      INTEGER NOT NULL,
	scope      INTEGER NOT NULL,
	profile_id TEXT NOT NULL,
	mailbox_id TEXT NOT NULL,
	email_id   TEXT NOT NULL,
	workload   INTEGER NOT NULL,
	kind       INTEGER NOT NULL,
	message    TEXT NOT NULL,
	at         INTEGER NOT NULL,
	recipients TEXT
);
CREATE INDEX alerts_at ON alerts (at, id);
CREATE INDEX alerts_profile ON alerts (profile_id, at, id);
CREATE INDEX alerts_mailbox ON alerts (mailbox_id, at, id);
