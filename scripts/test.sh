#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages, Go modules),
# starts the real servers on loopback, runs vet and every test with the race detector,
# and stops the servers. Usage: bash scripts/test.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

echo "== go modules"
go mod download

echo "== mail servers (Dovecot, OpenSMTPD) and PostgreSQL"
bash scripts/mailservers.sh install
bash scripts/postgres.sh install
mail_dir="$(mktemp -d /tmp/crmsync-mail.XXXXXX)"
pg_dir="$(mktemp -d /tmp/crmsync-pg.XXXXXX)"
cleanup() {
	bash scripts/mailservers.sh stop "$mail_dir" || true
	bash scripts/postgres.sh stop "$pg_dir" || true
	rm -rf "$mail_dir" "$pg_dir"
}
trap cleanup EXIT
bash scripts/mailservers.sh start "$mail_dir" >/dev/null
bash scripts/postgres.sh start "$pg_dir" >/dev/null
export CRMSYNC_MAIL_ENV="$mail_dir/env" CRMSYNC_PG_ENV="$pg_dir/env"

echo "== gofmt, go vet"
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m "$@" ./...

echo "== fuzz (a short run of each parser's fuzz target)"
fuzz() { go test -run '^$' -fuzz "^$2\$" -fuzztime "${CRMSYNC_FUZZTIME:-10s}" "$1"; }
fuzz ./provider/mailparse FuzzParse
fuzz ./provider/mailparse FuzzParseHeader
fuzz ./provider/mailparse FuzzParseAddressList
fuzz ./provider/mailparse FuzzParseDate
fuzz ./provider/mailparse FuzzHeaderFields
fuzz ./provider/mailparse FuzzMIMEHeader
fuzz ./provider/mailparse FuzzMultipart
fuzz ./provider/mailparse FuzzBase64
fuzz ./provider/mailparse FuzzMessageIDs
fuzz ./filter FuzzTokenFind
fuzz ./filter FuzzParseFilter
