-- crmsync sqlstore schema, version 3 (PostgreSQL): the parties of emails.
-- The sender and recipients of an email matched to CRM records (see crmsync.Email's
-- Parties and filter's Resolution.Apply), a JSON list like the other lists: NULL when
-- empty. Each element is {"role", "name", "email", "kind", "id"}: role is the code of
-- crmsync.PartyRole (1 from, 2 to, 3 cc, 4 bcc), kind and id the record's, missing
-- when the address stayed unresolved. Emails stored before this version have none.
-- A nullable column without a default is added without rewriting the table.
ALTER TABLE emails ADD COLUMN parties JSONB;
