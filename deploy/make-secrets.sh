#!/bin/sh
# Creates the secret files docker-compose.yml reads through Compose `secrets:` (see README, "Deployment"):
#
#   sh deploy/make-secrets.sh          # ./secrets/ beside docker-compose.yml
#   sh deploy/make-secrets.sh DIR      # anywhere else
#
# Each file gets 32 random bytes from /dev/urandom as 64 hex characters, mode 0600 in a 0700 folder. An existing
# file is never overwritten (InfluxDB and Grafana read theirs only when their data volume is first initialised, so a
# new value would no longer match), so running this again is harmless. It prints only the paths, never a value.
# Never commit the folder: .gitignore and .dockerignore exclude it.
set -eu
umask 077

dir=${1:-$(dirname "$0")/../secrets}
mkdir -p "$dir"
chmod 700 "$dir"

for name in influxdb-admin-password influxdb-admin-token grafana-admin-password; do
    path=$dir/$name
    if [ -e "$path" ] || [ -L "$path" ]; then
        echo "kept:    $path"
        continue
    fi
    tmp=$(mktemp "$dir/.$name.XXXXXX")
    # Through a pipe into the file: the value is never an argument (visible in ps) nor printed.
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$tmp"
    chmod 600 "$tmp"
    # A hard link fails if the name exists: never overwrites, even when two runs race.
    if ln "$tmp" "$path" 2>/dev/null; then
        echo "created: $path"
    else
        echo "kept:    $path"
    fi
    rm -f "$tmp"
done
