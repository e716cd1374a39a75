// Package mailparse reads raw RFC 5322 messages into *crmsync.Email values: the one
// lenient MIME parser every provider uses.
//
// It is lenient, as mail clients are, because parsing must never fail a sync cycle: a
// message fails only when it has no readable header at all, with a *ParseError that
// names the reason. Damage it can work around (a malformed header line, an address
// that is not valid RFC 5322, an unknown charset or transfer encoding, a broken or
// truncated multipart, an undecodable attachment) becomes a note on the email
// (Email.Notes) instead, and every string it returns is valid UTF-8.
//
// Providers read headers first and bodies only for the messages the engine decides to
// track: ParseHeader gives the header-only email, ParseBody adds the bodies and
// attachments to it, and Parse does both at once. The helpers ParseAddressList,
// NormalizeMessageID, SplitMessageIDs, DecodeText and ParseDate read single header
// values the same way.
//
// It is built on go-message and the standard library's net/mail, and reads the forms
// nearly all mail takes without them, in place and with few allocations: header blocks,
// message ids, plain address lists, the usual date, multipart bodies in memory, base64
// in lines. Each such shortcut falls back to the general reader on anything else, and a
// differential fuzz target holds it to reading what that reader reads (fuzz_test.go;
// CI runs each for a short time).
package mailparse
