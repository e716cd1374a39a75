package crmsync

import (
	"errors"
	"fmt"
	"time"
)

// ServerKind is the kind of mail server a profile connects to.
type ServerKind uint8

// Server kinds.
const (
	ServerIMAP           ServerKind = iota + 1 // IMAP for incoming, SMTP for outgoing
	ServerPOP3                                 // POP3 for incoming, SMTP for outgoing; email only
	ServerGmail                                // Gmail: OAuth 2.0 over IMAP and SMTP
	ServerExchangeOnline                       // Exchange Online through Microsoft Graph
	ServerExchange                             // Exchange Server on premises
)

// String returns the kind's short name, such as "imap" or "exchange-online".
func (k ServerKind) String() string {
	switch k {
	case ServerIMAP:
		return "imap"
	case ServerPOP3:
		return "pop3"
	case ServerGmail:
		return "gmail"
	case ServerExchangeOnline:
		return "exchange-online"
	case ServerExchange:
		return "exchange"
	}
	return fmt.Sprintf("server(%d)", uint8(k))
}

// CredentialSource says where a connection's credentials come from.
type CredentialSource uint8

// Credential sources.
const (
	CredentialsFromMailbox    CredentialSource = iota // each mailbox (user or queue) holds its own
	CredentialsFromProfile                            // the profile holds one set for all its mailboxes
	CredentialsServerToServer                         // app-only OAuth (Exchange Online)
	CredentialsOAuthGrant                             // a per-mailbox OAuth grant (Gmail)
)

// Security is how a connection is protected.
type Security uint8

// Connection security. The zero value is implicit TLS; plaintext must be asked for.
const (
	SecurityTLS       Security = iota // implicit TLS from the first byte
	SecuritySTARTTLS                  // plaintext upgraded with STARTTLS/STLS, required
	SecurityPlaintext                 // no TLS at all: for loopback test servers only
)

// Endpoint is a server address and how to reach it.
type Endpoint struct {
	Host     string
	Port     int
	Security Security
	// InsecureSkipVerify turns off certificate verification. Off by default.
	InsecureSkipVerify bool
}

// Address returns "host:port".
func (e Endpoint) Address() string { return fmt.Sprintf("%s:%d", e.Host, e.Port) }

// Credentials authenticate a connection. They are secrets: never log them.
type Credentials struct {
	Username     string
	Password     string
	RefreshToken string // OAuth 2.0 refresh token
}

// IsZero reports whether no credential is set.
func (c Credentials) IsZero() bool { return c == Credentials{} }

// String hides the secrets so that a Credentials value printed by mistake leaks nothing.
func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{Username:%q, secrets hidden}", c.Username)
}

// GoString hides the secrets from %#v too.
func (c Credentials) GoString() string { return c.String() }

// Limits and defaults of a server profile, as the product documents them.
const (
	DefaultMaxConnections = 10
	MaxMaxConnections     = 300
	MaxPollInterval       = 1440 * time.Minute
	MaxConnectionTimeout  = 100 * time.Second
	// DefaultConnectionTimeout applies when ServerProfile.ConnectionTimeout is zero.
	DefaultConnectionTimeout = 60 * time.Second
	// DefaultAttachmentLimit applies when ServerProfile.MaxAttachmentSize is zero.
	DefaultAttachmentLimit = 5 << 20
	MaxAttachmentLimit     = 128 << 20
)

// ServerProfile describes one mail server and how the engine talks to it. Mailboxes
// point to a profile; every connection to the profile's server shares its limits.
type ServerProfile struct {
	ID      string
	Name    string
	Kind    ServerKind
	OwnerID string // the user who receives the profile's alerts

	Incoming Endpoint // IMAP or POP3 (unused by Exchange Online)
	Outgoing Endpoint // SMTP (unused by Exchange Online)

	CredentialSource CredentialSource
	Credentials      Credentials // used when CredentialSource is CredentialsFromProfile

	// MaxConnections caps the concurrent connections to this server, 1–300;
	// zero means DefaultMaxConnections. The engine never exceeds it.
	MaxConnections int
	// MinPollInterval is the shortest time between two cycles of one mailbox-workload,
	// 0–1440 minutes; zero means the cadence policy alone decides.
	MinPollInterval time.Duration
	// ConnectionTimeout bounds one connection attempt, at most 100 s; zero means
	// DefaultConnectionTimeout.
	ConnectionTimeout time.Duration
	// ProcessEmailFrom: only mail received after it is processed. A mailbox may set a
	// later date of its own; the later of the two applies (see Mailbox.EffectiveStart).
	ProcessEmailFrom time.Time
	// MoveFailedToUndeliverable moves an email that could not be tracked to the
	// mailbox's Undeliverable folder once its retries are spent. Off by default.
	MoveFailedToUndeliverable bool
	// KeepSentCopy: when not nil and false, sent email is not copied to Sent Items.
	// Nil means the default, which is on.
	KeepSentCopy *bool
	// MaxAttachmentSize skips larger attachments (the email notes it); zero means
	// DefaultAttachmentLimit, at most MaxAttachmentLimit.
	MaxAttachmentSize int64
}

// Connections returns the effective connection cap.
func (p *ServerProfile) Connections() int {
	if p.MaxConnections == 0 {
		return DefaultMaxConnections
	}
	return p.MaxConnections
}

// Timeout returns the effective connection timeout.
func (p *ServerProfile) Timeout() time.Duration {
	if p.ConnectionTimeout == 0 {
		return DefaultConnectionTimeout
	}
	return p.ConnectionTimeout
}

// SentCopy reports whether sent email is copied to Sent Items (default true).
func (p *ServerProfile) SentCopy() bool { return p.KeepSentCopy == nil || *p.KeepSentCopy }

// AttachmentLimit returns the effective per-attachment size limit.
func (p *ServerProfile) AttachmentLimit() int64 {
	if p.MaxAttachmentSize == 0 {
		return DefaultAttachmentLimit
	}
	return p.MaxAttachmentSize
}

// Validate checks the profile's fields against the documented ranges. The error names
// the first bad field.
func (p *ServerProfile) Validate() error {
	var errs []error
	if p.ID == "" {
		errs = append(errs, errors.New("ID is empty"))
	}
	if p.Kind < ServerIMAP || p.Kind > ServerExchange {
		errs = append(errs, fmt.Errorf("Kind %d is not a server kind", p.Kind))
	}
	if p.MaxConnections < 0 || p.MaxConnections > MaxMaxConnections {
		errs = append(errs, fmt.Errorf("MaxConnections %d is outside 1–%d", p.MaxConnections, MaxMaxConnections))
	}
	if p.MinPollInterval < 0 || p.MinPollInterval > MaxPollInterval {
		errs = append(errs, fmt.Errorf("MinPollInterval %v is outside 0–%v", p.MinPollInterval, MaxPollInterval))
	}
	if p.ConnectionTimeout < 0 || p.ConnectionTimeout > MaxConnectionTimeout {
		errs = append(errs, fmt.Errorf("ConnectionTimeout %v is outside 0–%v", p.ConnectionTimeout, MaxConnectionTimeout))
	}
	if p.MaxAttachmentSize < 0 || p.MaxAttachmentSize > MaxAttachmentLimit {
		errs = append(errs, fmt.Errorf("MaxAttachmentSize %d is outside 0–%d", p.MaxAttachmentSize, MaxAttachmentLimit))
	}
	if len(errs) > 0 {
		return &ValidationError{What: "server profile " + p.ID, Err: errors.Join(errs...)}
	}
	return nil
}

// ValidationError reports a value that breaks a documented rule.
type ValidationError struct {
	What string // what was checked, e.g. "server profile p1"
	Err  error
}

func (e *ValidationError) Error() string { return "crmsync: invalid " + e.What + ": " + e.Err.Error() }
func (e *ValidationError) Unwrap() error { return e.Err }
