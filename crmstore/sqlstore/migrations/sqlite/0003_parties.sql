-- crmsync sqlstore schema, version 3 (SQLite): the parties of emails.
-- The sender and recipients of an email matched to CRM records (see crmsync.Email's
-- Parties and filter's Resolution.Apply), a JSON list like the other lists: NULL when
-- empty. Each element is {"role", "name", "email", "kind", "id"}: role is the code of
-- crmsync.PartyRole (1 from, 2 to, 3 cc, 4 bcc), kind and id the record's, missing
-- when the address stayed unresolved. Emails stored before this version have none.
ALTER TABLE emails ADD COLUMN parties TEXT;
