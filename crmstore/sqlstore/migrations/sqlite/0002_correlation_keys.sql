-- crmsync sqlstore schema, version 2 (SQLite): the correlation keys of emails.
-- The keys an answer is matched by when it has no In-Reply-To the CRM knows (see
-- crmsync.Email and filter's TokenIndex, ConversationIndex and SubjectIndex): the
-- tracking token of the subject, the conversation GUID of the Thread-Index, and the
-- hash of the normalized subject. Emails stored before this version have none ('').
ALTER TABLE emails ADD COLUMN tracking_token TEXT NOT NULL DEFAULT '';
ALTER TABLE emails ADD COLUMN conversation_id TEXT NOT NULL DEFAULT '';
ALTER TABLE emails ADD COLUMN subject_hash TEXT NOT NULL DEFAULT '';

-- Each lookup is one index read. The indexes hold only the emails that have the key
-- (most have no token or conversation), and the lookups repeat the index's condition
-- so that the planner knows the index holds every row they can match. Smart matching
-- asks for the emails of a subject hash created since a bound: one range of the third.
CREATE INDEX emails_tracking_token ON emails (tracking_token) WHERE tracking_token <> '';
CREATE INDEX emails_conversation_id ON emails (conversation_id) WHERE conversation_id <> '';
CREATE INDEX emails_subject_hash ON emails (subject_hash, created_at) WHERE subject_hash <> '';
