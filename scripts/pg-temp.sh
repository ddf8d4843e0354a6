#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the test suite.
#
#   scripts/pg-temp.sh start   initdb + start on 127.0.0.1, create faceid_test (idempotent)
#   scripts/pg-temp.sh url     print the SQLAlchemy URL of the running cluster
#   scripts/pg-temp.sh stop    stop it and delete its data dir (idempotent)
#
# The cluster is disposable: trust auth on loopback and fsync=off are deliberate, never reuse
# this for data that matters. State (port, data dir, bin dir) lives in $FACEID_PG_STATE, so
# concurrent runs (scripts/test.sh sets a private one) don't trip over each other.
set -euo pipefail

readonly DB_NAME=faceid_test
readonly FIRST_PORT=55432
readonly PORT_TRIES=50
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
# Default state file is per checkout (hash of its path) so two clones on one machine don't
# share a cluster by accident.
STATE_FILE="${FACEID_PG_STATE:-${TMPDIR:-/tmp}/faceid-pg-temp-$(printf '%s' "$REPO_ROOT" | cksum | cut -d' ' -f1).state}"
readonly STATE_FILE

log() { printf '[pg-temp] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

find_bindir() {
    # Debian installs server binaries outside PATH; take the newest major version present.
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && best="$d"
    done
    # Glob order is lexical (e.g. 16 after 15); fine for Debian's two-digit majors.
    [[ -n "$best" ]] || die "no initdb/pg_ctl under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    printf '%s\n' "$best"
}

# PostgreSQL refuses to run as root, so as root every server command runs as the postgres OS
# user (created by Debian's postgresql-common). As anyone else, run as ourselves.
as_pg() {
    if [[ "$(id -u)" -eq 0 ]]; then
        # cd / first: a cwd postgres can't read (e.g. /root) makes initdb/pg_ctl complain.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

load_state() {
    [[ -f "$STATE_FILE" ]] || return 1
    # shellcheck source=/dev/null
    source "$STATE_FILE"
    [[ -n "${PG_DIR:-}" && -n "${PG_PORT:-}" && -n "${PG_BIN:-}" ]]
}

is_running() {
    [[ -d "${PG_DIR:-}" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1
}

port_in_use() {
    # A successful connect means something already listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

url() {
    printf 'postgresql+psycopg://postgres@127.0.0.1:%s/%s\n' "$PG_PORT" "$DB_NAME"
}

make_datadir() {
    local base="${TMPDIR:-/tmp}" dir
    dir="$(mktemp -d "$base/faceid-pg.XXXXXX")"
    if [[ "$(id -u)" -eq 0 ]]; then
        chown postgres: "$dir"
        # A TMPDIR under e.g. /root is not traversable by postgres: fall back to /tmp.
        if ! as_pg test -w "$dir"; then
            rm -rf -- "$dir"
            log "postgres cannot use $base, falling back to /tmp"
            dir="$(mktemp -d /tmp/faceid-pg.XXXXXX)"
            chown postgres: "$dir"
        fi
    fi
    printf '%s\n' "$dir"
}

start() {
    if load_state && is_running; then
        log "already running on port $PG_PORT ($PG_DIR)"
        return 0
    fi
    # Stale state (server died, machine rebooted): clean up before starting afresh.
    [[ -f "$STATE_FILE" ]] && stop

    local bindir dir port tries=0
    bindir="$(find_bindir)"
    dir="$(make_datadir)"
    log "initdb in $dir ($bindir)"
    if ! as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
        >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf -- "$dir"
        die "initdb failed"
    fi
    # Speed over durability: the cluster is deleted after the run anyway. The socket goes in the
    # data dir because /var/run/postgresql may not exist (no main cluster) or be someone else's.
    cat >>"$dir/data/postgresql.conf" <<EOF

# --- faceid throwaway test cluster ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/data'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 120
EOF

    # Ports may be taken by another run starting at the same moment: try the next one.
    port=$FIRST_PORT
    while :; do
        if (( tries++ >= PORT_TRIES )); then
            cat "$dir/server.log" >&2 2>/dev/null || true
            rm -rf -- "$dir"
            die "could not start on any port in $FIRST_PORT..$((FIRST_PORT + PORT_TRIES - 1))"
        fi
        if port_in_use "$port"; then
            port=$((port + 1))
            continue
        fi
        if as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" \
            -w -t 60 start >/dev/null; then
            break
        fi
        # Only a lost race for the port is worth retrying; anything else is a real failure.
        if ! grep -q 'could not bind\|already in use' "$dir/server.log" 2>/dev/null; then
            cat "$dir/server.log" >&2 2>/dev/null || true
            rm -rf -- "$dir"
            die "server failed to start"
        fi
        log "port $port taken, trying the next one"
        port=$((port + 1))
    done

    # Write state before createdb so that `stop` can clean up even if createdb fails.
    printf 'PG_DIR=%q\nPG_PORT=%q\nPG_BIN=%q\n' "$dir/data" "$port" "$bindir" >"$STATE_FILE"
    PG_DIR="$dir/data" PG_PORT="$port" PG_BIN="$bindir"
    as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DB_NAME"
    log "running on 127.0.0.1:$port, database $DB_NAME (state: $STATE_FILE)"
}

stop() {
    if ! load_state; then
        rm -f -- "$STATE_FILE"
        log "not running (no state in $STATE_FILE)"
        return 0
    fi
    if is_running; then
        # fast = roll back open transactions and disconnect; no need to wait for clients.
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -m fast -w -t 60 stop >/dev/null ||
            log "pg_ctl stop failed; removing the data dir anyway"
    fi
    # PG_DIR is <mktemp dir>/data; remove the mktemp dir, but only if it looks like ours.
    local top
    top="$(dirname -- "$PG_DIR")"
    case "$(basename -- "$top")" in
        faceid-pg.*) rm -rf -- "$top" ;;
        *) log "refusing to delete unexpected dir $top" ;;
    esac
    rm -f -- "$STATE_FILE"
    log "stopped (port $PG_PORT)"
}

main() {
    case "${1:-}" in
        start) start ;;
        stop) stop ;;
        url)
            if ! { load_state && is_running; }; then
                die "not running; run: $0 start"
            fi
            url
            ;;
        *)
            printf 'usage: %s start|stop|url\n' "$0" >&2
            exit 2
            ;;
    esac
}

main "$@"
