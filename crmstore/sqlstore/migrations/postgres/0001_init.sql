-- crmsync sqlstore schema, version 1 (PostgreSQL).
-- Times are timestamptz; lists are jsonb (NULL when empty); secrets are AES-256-GCM
-- sealed bytea (see secrets.go). Keys and IDs use the C collation: they sort by bytes,
-- as Go compares strings, whatever the database's locale.

-- The fencing tokens of leases: one counter for the whole database, so a token is never
-- handed out twice, not even to a mailbox mapped again after it was deleted.
CREATE SEQUENCE lease_tokens;

CREATE TABLE profiles (
	id                  TEXT COLLATE "C" PRIMARY KEY,
	name                TEXT NOT NULL,
	kind                SMALLINT NOT NULL,
	owner_id            TEXT COLLATE "C" NOT NULL,
	incoming_host       TEXT NOT NULL,
	incoming_port       INTEGER NOT NULL,
	incoming_security   SMALLINT NOT NULL,
	incoming_insecure   BOOLEAN NOT NULL,
	outgoing_host       TEXT NOT NULL,
	outgoing_port       INTEGER NOT NULL,
	outgoing_security   SMALLINT NOT NULL,
	outgoing_insecure   BOOLEAN NOT NULL,
	credential_source   SMALLINT NOT NULL,
	username            TEXT NOT NULL,
	password            BYTEA,
	refresh_token       BYTEA,
	secret_key          TEXT COLLATE "C",
	max_connections     INTEGER NOT NULL,
	min_poll_interval   BIGINT NOT NULL, -- nanoseconds
	connection_timeout  BIGINT NOT NULL, -- nanoseconds
	process_email_from  TIMESTAMPTZ NOT NULL,
	move_failed         BOOLEAN NOT NULL,
	keep_sent_copy      BOOLEAN,          -- NULL: the default (on)
	max_attachment_size BIGINT NOT NULL
);
CREATE INDEX profiles_secret_key ON profiles (secret_key) WHERE secret_key IS NOT NULL;

CREATE TABLE mailboxes (
	id                  TEXT COLLATE "C" PRIMARY KEY,
	address             TEXT COLLATE "C" NOT NULL UNIQUE, -- lower-cased
	owner_kind          SMALLINT NOT NULL,
	owner_id            TEXT COLLATE "C" NOT NULL,
	profile_id          TEXT COLLATE "C" NOT NULL,
	approval            SMALLINT NOT NULL,
	process_email_after TIMESTAMPTZ NOT NULL,
	username            TEXT NOT NULL,
	password            BYTEA,
	refresh_token       BYTEA,
	secret_key          TEXT COLLATE "C",
	incoming_option     SMALLINT NOT NULL,
	tracked_folders     JSONB,
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
	mailbox_id      TEXT COLLATE "C" NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
	workload        SMALLINT NOT NULL,
	method          SMALLINT NOT NULL,
	test            SMALLINT NOT NULL,
	tested_at       TIMESTAMPTZ NOT NULL,
	test_error      TEXT NOT NULL,
	status          SMALLINT NOT NULL,
	status_at       TIMESTAMPTZ NOT NULL,
	last_error      TEXT NOT NULL,
	last_error_kind SMALLINT NOT NULL,
	next_run        TIMESTAMPTZ,
	lease_owner     TEXT COLLATE "C", -- NULL: no one holds it
	lease_token     BIGINT NOT NULL DEFAULT 0,
	lease_expires   TIMESTAMPTZ,
	cursor          BYTEA,
	failures        INTEGER NOT NULL DEFAULT 0,
	load            DOUBLE PRECISION NOT NULL DEFAULT 0,
	PRIMARY KEY (mailbox_id, workload)
) WITH (fillfactor = 70); -- room for the in-place updates of claims
CREATE INDEX mailbox_workloads_runnable ON mailbox_workloads (workload, next_run, mailbox_id)
	WHERE next_run IS NOT NULL AND method = 1 AND test = 1;

CREATE TABLE emails (
	id                TEXT COLLATE "C" PRIMARY KEY,
	mailbox_id        TEXT COLLATE "C" NOT NULL,
	direction         SMALLINT NOT NULL,
	status            SMALLINT NOT NULL,
	message_id        TEXT COLLATE "C" NOT NULL,
	in_reply_to       TEXT NOT NULL,
	refs              JSONB,
	thread_index      TEXT NOT NULL,
	provider_id       TEXT COLLATE "C" NOT NULL,
	folder            TEXT NOT NULL,
	from_name         TEXT NOT NULL,
	from_email        TEXT NOT NULL,
	to_addrs          JSONB,
	cc_addrs          JSONB,
	bcc_addrs         JSONB,
	reply_to          JSONB,
	subject           TEXT NOT NULL,
	text_body         TEXT NOT NULL,
	html_body         TEXT NOT NULL,
	size              BIGINT NOT NULL,
	sent_at           TIMESTAMPTZ NOT NULL,
	received_at       TIMESTAMPTZ NOT NULL,
	regarding_id      TEXT NOT NULL,
	correlation       SMALLINT NOT NULL,
	delivery_attempts INTEGER NOT NULL,
	failure_reason    TEXT NOT NULL,
	notes             JSONB,
	attachments       INTEGER NOT NULL, -- rows in email_attachments
	created_at        TIMESTAMPTZ NOT NULL,
	modified_at       TIMESTAMPTZ NOT NULL
);
-- Never the same message twice in one mailbox. The Message-ID comes first so that the
-- same index finds a message in any mailbox (EmailsByMessageID).
CREATE UNIQUE INDEX emails_provider_id ON emails (mailbox_id, provider_id) WHERE provider_id <> '';
CREATE UNIQUE INDEX emails_message_id ON emails (message_id, mailbox_id) WHERE message_id <> '';
CREATE INDEX emails_mailbox ON emails (mailbox_id, created_at, id);
CREATE INDEX emails_created ON emails (created_at, id);
CREATE INDEX emails_outbox ON emails (mailbox_id, created_at, id) WHERE status IN (6, 7);

CREATE TABLE email_attachments (
	email_id     TEXT COLLATE "C" NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
	pos          INTEGER NOT NULL,
	name         TEXT NOT NULL,
	content_type TEXT NOT NULL,
	content_id   TEXT NOT NULL,
	size         BIGINT NOT NULL,
	content      BYTEA,
	skipped      BOOLEAN NOT NULL,
	skip_reason  TEXT NOT NULL,
	PRIMARY KEY (email_id, pos)
);

CREATE TABLE items (
	mailbox_id  TEXT COLLATE "C" NOT NULL,
	kind        SMALLINT NOT NULL,
	provider_id TEXT COLLATE "C" NOT NULL,
	record_id   TEXT NOT NULL,
	change_key  TEXT NOT NULL,
	modified_at TIMESTAMPTZ NOT NULL,
	data        JSONB NOT NULL, -- JSON: the appointment, contact or task
	PRIMARY KEY (mailbox_id, kind, provider_id)
);

CREATE TABLE alerts (
	id         TEXT COLLATE "C" PRIMARY KEY,
	level      SMALLINT NOT NULL,
	scope      SMALLINT NOT NULL,
	profile_id TEXT COLLATE "C" NOT NULL,
	mailbox_id TEXT COLLATE "C" NOT NULL,
	email_id   TEXT COLLATE "C" NOT NULL,
	workload   SMALLINT NOT NULL,
	kind       SMALLINT NOT NULL,
	message    TEXT NOT NULL,
	at         TIMESTAMPTZ NOT NULL,
	recipients JSONB
);
CREATE INDEX alerts_at ON alerts (at, id);
CREATE INDEX alerts_profile ON alerts (profile_id, at, id);
CREATE INDEX alerts_mailbox ON alerts (mailbox_id, at, id);
