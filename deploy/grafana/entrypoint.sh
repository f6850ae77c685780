#!/bin/sh
# Grafana's entrypoint in docker-compose.yml: puts the InfluxDB reader token into DP_INFLUX_TOKEN, then runs the
# image's own /run.sh (which also turns GF_*__FILE into GF_*).
#
# Why: Grafana's provisioning files expand only environment variables (grafana.com, "Provision Grafana": $VAR /
# ${VAR}), and the datasource's `Token ${DP_INFLUX_TOKEN}` header needs the token. Set in docker-compose.yml's
# `environment:`, a value shows in `docker inspect` and is fixed when the container is created; read here from the
# 0600 file the influxdb-tokens bootstrap wrote into Grafana's own volume, it lives only in the environment of
# Grafana's process (readable by that uid alone, /proc/<pid>/environ) and follows a re-created token on restart.
# The token is never printed.
set -eu

token_file=${DP_INFLUX_TOKEN_FILE:?DP_INFLUX_TOKEN_FILE: the reader token file}
if [ ! -r "$token_file" ] || [ ! -s "$token_file" ]; then
    echo "grafana entrypoint: cannot read the InfluxDB reader token $token_file (did influxdb-tokens run?)" >&2
    exit 1
fi
DP_INFLUX_TOKEN=$(cat "$token_file")
export DP_INFLUX_TOKEN
unset DP_INFLUX_TOKEN_FILE
exec /run.sh "$@"
