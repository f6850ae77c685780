#!/bin/sh
# One-shot bootstrap of the InfluxDB 2.x tokens: docker-compose.yml's `influxdb-tokens` service (image influxdb, for
# its `influx` CLI), run as root on every `docker compose up`, before ingest and Grafana start.
#
# With the operator token (a Compose secret), it gives each consumer a token with only what that consumer needs, in a
# volume of its own, as a file only the consumer's uid reads (0600, folder 0700):
#   writer: read + write on the bucket  -> $DP_WRITER_DIR/influx-token, owned by $DP_WRITER_UID (ingest)
#   reader: read on the bucket          -> $DP_READER_DIR/influx-token, owned by $DP_READER_UID (Grafana)
# It also copies Grafana's admin password into Grafana's volume, owned by Grafana's uid: Compose (without Swarm)
# bind-mounts a secret file with its host owner and mode, so a 0600 file of the operator is unreadable by uid 472.
#
# Idempotent: a token file is kept while `influx auth list` shows its token as an active authorization of its
# description (districtpulse-writer / districtpulse-reader) on this bucket; otherwise a new authorization is
# created, the file replaced, and every other authorization of that description deleted (its token is in no file).
#
# No token is ever printed, logged or passed as an argument (ps shows arguments): the operator token reaches
# `influx` as INFLUX_TOKEN in its environment; tokens are compared by awk reading the file itself; a new token goes
# from `influx auth create --json` through a pipe into its file. Only ids, paths and descriptions are printed.
set -eu
umask 077

: "${INFLUX_HOST:?}" "${INFLUX_ORG:?}" "${DP_INFLUX_BUCKET:?}" "${DP_INFLUX_ADMIN_USER:?}"
: "${DP_INFLUX_OPERATOR_TOKEN_FILE:?}" "${DP_WRITER_DIR:?}" "${DP_WRITER_UID:?}" "${DP_READER_DIR:?}" "${DP_READER_UID:?}"

INFLUX_TOKEN=$(cat "$DP_INFLUX_OPERATOR_TOKEN_FILE")
export INFLUX_HOST INFLUX_ORG INFLUX_TOKEN

fail() {
    echo "make-tokens: $*" >&2
    exit 1
}

# `influx bucket list --hide-headers`: tab-separated, the id first.
bucket_id=$(influx bucket list --name "$DP_INFLUX_BUCKET" --hide-headers | cut -f1)
case $bucket_id in
    "" | *[!0-9a-f]*) fail "bucket $DP_INFLUX_BUCKET not found in org $INFLUX_ORG" ;;
esac

# Lines "ID keep" / "ID stale" for the authorizations described $1: keep is the active one whose token is the one
# in file $2 (may be missing) with every action of $3 ("read write") on the bucket. Reads `influx auth list --json`
# (one field a line: id, description, token, status, ..., then the permissions as "read:orgs/O/buckets/B").
authorizations() {
    influx auth list --json | awk -v desc="$1" -v tokfile="$2" -v actions="$3" -v bucket="$bucket_id" '
        function value(s) { sub(/^[^:]*:[ \t]*"/, "", s); sub(/",?[ \t\r]*$/, "", s); return s }
        function emit(   n, i, a, ok) {
            if (id == "" || d != desc) return
            ok = (mine != "" && t == mine && s == "active")
            n = split(actions, a, " ")
            for (i = 1; i <= n; i++) if (p !~ (" " a[i] ":[^ ]*buckets/" bucket " ")) ok = 0
            print id, (ok ? "keep" : "stale")
        }
        BEGIN { mine = ""; if ((getline mine < tokfile) <= 0) mine = "" }
        /^[ \t]*"id":/ { emit(); id = value($0); d = t = s = ""; p = " " }
        /^[ \t]*"description":/ { d = value($0) }
        /^[ \t]*"token":/ { t = value($0) }
        /^[ \t]*"status":/ { s = value($0) }
        /^[ \t]*"(read|write):/ { line = $0; gsub(/[ \t",]/, "", line); p = p line " " }
        END { emit() }'
}

# provide ROLE DIR UID ACTIONS: the token file of ROLE in DIR, owned by UID, with ACTIONS on the bucket.
provide() {
    role=$1 dir=$2 uid=$3 actions=$4
    desc=districtpulse-$role
    file=$dir/influx-token
    mkdir -p "$dir"
    chown "$uid:0" "$dir"
    chmod 700 "$dir"

    keep=$(authorizations "$desc" "$file" "$actions" | awk '$2 == "keep" { print $1; exit }')
    if [ -n "$keep" ]; then
        echo "$desc: kept authorization $keep ($file)"
    else
        set --
        for action in $actions; do
            set -- "$@" "--$action-bucket" "$bucket_id"
        done
        tmp=$(mktemp "$dir/.influx-token.XXXXXX")
        influx auth create --user "$DP_INFLUX_ADMIN_USER" --description "$desc" "$@" --json |
            awk '/^[ \t]*"token":/ { sub(/^[^:]*:[ \t]*"/, ""); sub(/",?[ \t\r]*$/, ""); printf "%s", $0 }' >"$tmp"
        [ -s "$tmp" ] || { rm -f "$tmp"; fail "$desc: influx auth create returned no token"; }
        chown "$uid:0" "$tmp"
        chmod 600 "$tmp"
        mv -f "$tmp" "$file"
        keep=$(authorizations "$desc" "$file" "$actions" | awk '$2 == "keep" { print $1; exit }')
        [ -n "$keep" ] || fail "$desc: the new authorization is not listed"
        echo "$desc: created authorization $keep ($file)"
    fi
    chown "$uid:0" "$file"
    chmod 600 "$file"

    for stale in $(authorizations "$desc" "$file" "$actions" | awk '$2 == "stale" { print $1 }'); do
        # `influx auth delete` prints the deleted authorization, token included: not into the log.
        influx auth delete --id "$stale" >/dev/null
        echo "$desc: deleted authorization $stale (not in $file)"
    done
}

provide writer "$DP_WRITER_DIR" "$DP_WRITER_UID" "read write"
provide reader "$DP_READER_DIR" "$DP_READER_UID" "read"

if [ -n "${DP_GRAFANA_ADMIN_PASSWORD_FILE:-}" ]; then
    target=$DP_READER_DIR/admin-password
    tmp=$(mktemp "$DP_READER_DIR/.admin-password.XXXXXX")
    cat "$DP_GRAFANA_ADMIN_PASSWORD_FILE" >"$tmp"
    [ -s "$tmp" ] || { rm -f "$tmp"; fail "$DP_GRAFANA_ADMIN_PASSWORD_FILE is empty"; }
    chown "$DP_READER_UID:0" "$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$target"
    echo "grafana admin password: $target"
fi
