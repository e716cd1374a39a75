package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/crmsync/crmsync"
)

const profileCols = `id, name, kind, owner_id,
	incoming_host, incoming_port, incoming_security, incoming_insecure,
	outgoing_host, outgoing_port, outgoing_security, outgoing_insecure,
	credential_source, username, password, refresh_token, secret_key,
	max_connections, min_poll_interval, connection_timeout, process_email_from,
	move_failed, keep_sent_copy, max_attachment_size`

// PutProfile inserts or replaces the profile with p.ID. Its credentials' secrets are
// stored encrypted; without Options.Keys a profile with secrets is refused.
func (s *Store) PutProfile(ctx context.Context, p *crmsync.ServerProfile) error {
	if p == nil || p.ID == "" {
		return errors.New("sqlstore: put profile: the profile has no ID")
	}
	sc, err := s.sealCredentials(p.Credentials, "profiles", p.ID)
	if err != nil {
		return fmt.Errorf("sqlstore: put profile %s: %w", p.ID, err)
	}
	var keep any
	if p.KeepSentCopy != nil {
		keep = *p.KeepSentCopy
	}
	_, err = s.wdb.ExecContext(ctx, s.q(`INSERT INTO profiles (`+profileCols+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
	name = excluded.name, kind = excluded.kind, owner_id = excluded.owner_id,
	incoming_host = excluded.incoming_host, incoming_port = excluded.incoming_port,
	incoming_security = excluded.incoming_security, incoming_insecure = excluded.incoming_insecure,
	outgoing_host = excluded.outgoing_host, outgoing_port = excluded.outgoing_port,
	outgoing_security = excluded.outgoing_security, outgoing_insecure = excluded.outgoing_insecure,
	credential_source = excluded.credential_source, username = excluded.username,
	password = excluded.password, refresh_token = excluded.refresh_token, secret_key = excluded.secret_key,
	max_connections = excluded.max_connections, min_poll_interval = excluded.min_poll_interval,
	connection_timeout = excluded.connection_timeout, process_email_from = excluded.process_email_from,
	move_failed = excluded.move_failed, keep_sent_copy = excluded.keep_sent_copy,
	max_attachment_size = excluded.max_attachment_size`),
		p.ID, p.Name, int(p.Kind), p.OwnerID,
		p.Incoming.Host, p.Incoming.Port, int(p.Incoming.Security), p.Incoming.InsecureSkipVerify,
		p.Outgoing.Host, p.Outgoing.Port, int(p.Outgoing.Security), p.Outgoing.InsecureSkipVerify,
		int(p.CredentialSource), sc.username, sc.password, sc.refresh, sc.key,
		p.MaxConnections, int64(p.MinPollInterval), int64(p.ConnectionTimeout), s.ts(p.ProcessEmailFrom),
		p.MoveFailedToUndeliverable, keep, p.MaxAttachmentSize)
	if err != nil {
		return fmt.Errorf("sqlstore: put profile %s: %w", p.ID, err)
	}
	return nil
}

// Profile returns the profile with this id.
func (s *Store) Profile(ctx context.Context, id string) (*crmsync.ServerProfile, error) {
	ps, err := s.profiles(ctx, s.rdb, []string{id})
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, notFound("profile", id)
	}
	return ps[id], nil
}

// profiles reads the profiles with these ids; missing ones are not in the map.
func (s *Store) profiles(ctx context.Context, q queryer, ids []string) (map[string]*crmsync.ServerProfile, error) {
	out := make(map[string]*crmsync.ServerProfile, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.QueryContext(ctx, s.q("SELECT "+profileCols+" FROM profiles WHERE id IN ("+placeholders(len(ids))+")"), stringArgs(ids)...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading profiles: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			p                 crmsync.ServerProfile
			password, refresh []byte
			secretKey         sql.NullString
			username          string
			minPoll, connTO   int64
			from              dbTime
			keep              sql.NullBool
		)
		if err := rows.Scan(&p.ID, &p.Name, &p.Kind, &p.OwnerID,
			&p.Incoming.Host, &p.Incoming.Port, &p.Incoming.Security, &p.Incoming.InsecureSkipVerify,
			&p.Outgoing.Host, &p.Outgoing.Port, &p.Outgoing.Security, &p.Outgoing.InsecureSkipVerify,
			&p.CredentialSource, &username, &password, &refresh, &secretKey,
			&p.MaxConnections, &minPoll, &connTO, &from,
			&p.MoveFailedToUndeliverable, &keep, &p.MaxAttachmentSize); err != nil {
			return nil, fmt.Errorf("sqlstore: reading profiles: %w", err)
		}
		p.MinPollInterval, p.ConnectionTimeout = time.Duration(minPoll), time.Duration(connTO)
		p.ProcessEmailFrom = from.time()
		if keep.Valid {
			b := keep.Bool
			p.KeepSentCopy = &b
		}
		if p.Credentials, err = s.openCredentials(username, password, refresh, "profiles", p.ID); err != nil {
			return nil, err
		}
		out[p.ID] = &p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: reading profiles: %w", err)
	}
	return out, nil
}
