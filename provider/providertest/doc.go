// Package providertest helps test code that talks to mail servers, and proves that a
// provider talks to them correctly.
//
// Server is a scriptable in-memory mail server with many mailboxes: it implements
// provider.Dialer, and each *Conn it dials implements every provider capability. Tests
// deliver messages, inject errors, make sends end with an unknown outcome, expire
// cursors, add latency on a schedule.Clock, and count calls and open connections. It
// behaves like a real server where the engine's promises depend on it: cursors are
// opaque and cover every message looked at, bodies are fetched only for screened-in
// messages, moved messages get a new identity, and injected errors pass through as
// given. The engine's tests and benchmarks run on it.
//
// RunConformance is the suite every real provider (IMAP, POP3, Graph, ...) runs against
// a real or in-process server through a Harness; the fake runs it too. The package
// imports only the standard library and crmsync's own packages, so a provider's tests
// pull in nothing else.
package providertest
