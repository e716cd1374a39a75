package provider

import (
	"crypto/tls"

	"github.com/crmsync/crmsync"
)

// TLSConfig returns the TLS configuration of a connection to ep: base cloned (an empty
// configuration when nil, which verifies against the system's roots), with ep's host as
// ServerName when base names none, ep's InsecureSkipVerify applied on top, and TLS 1.2
// at least unless base says otherwise. Providers use it for implicit TLS and STARTTLS
// alike.
func TLSConfig(base *tls.Config, ep crmsync.Endpoint) *tls.Config {
	var cfg *tls.Config
	if base != nil {
		cfg = base.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = ep.Host
	}
	if ep.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}
