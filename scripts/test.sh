#!/usr/bin/env bash
# Run the test suite in one pytest invocation (one summary line), on SQLite and, when PostgreSQL
# server binaries are installed, also against a throwaway cluster (postgres-marked tests).
# Extra arguments go to pytest unchanged, e.g.: scripts/test.sh tests/browser -x
#
# Env honoured: FACEID_TEST_PG_URL (use this database, start no cluster), FACEID_CHROMIUM,
# CI=true (the conftests then fail, not skip, when PostgreSQL or Chromium is missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly PY=.venv/bin/python
[[ -x "$PY" ]] || { echo "[test] $PY missing: run make test (or create the venv)" >&2; exit 1; }

log() { printf '[test] %s\n' "$*" >&2; }

mkdir -p artifacts/screenshots

if [[ -z "${FACEID_CHROMIUM:-}" && -x /usr/bin/chromium ]]; then
    export FACEID_CHROMIUM=/usr/bin/chromium
fi
log "chromium: ${FACEID_CHROMIUM:-none (browser tests will skip, or fail under CI=true)}"

if [[ -n "${FACEID_TEST_PG_URL:-}" ]]; then
    log "postgres: using the given FACEID_TEST_PG_URL"
elif compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    # A private state file: another engineer's concurrent run gets its own cluster and port.
    FACEID_PG_STATE="$(mktemp "${TMPDIR:-/tmp}/faceid-pg-test.XXXXXX")"
    export FACEID_PG_STATE
    rm -f -- "$FACEID_PG_STATE"   # pg-temp.sh treats an existing state file as a cluster
    # EXIT covers normal ends and set -e failures; INT/TERM are routed to exit so it runs then too.
    trap 'bash scripts/pg-temp.sh stop || true' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    bash scripts/pg-temp.sh start
    FACEID_TEST_PG_URL="$(bash scripts/pg-temp.sh url)"
    export FACEID_TEST_PG_URL
    log "postgres: $FACEID_TEST_PG_URL"
else
    log "postgres: no server binaries (postgres tests will skip, or fail under CI=true)"
fi

status=0
"$PY" -m pytest -q "$@" || status=$?
if [[ $status -eq 5 ]]; then
    # pytest's "no tests collected": a wrong path or a broken collection must not look green.
    log "pytest collected no tests: treating as failure"
fi
exit "$status"
