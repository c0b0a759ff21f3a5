#!/usr/bin/env bash
# Profiles the telemetry-full gateway and catalog of faultline-bench (figure
# 1's "full" variant, or with SAMPLER_ARG=0.1 its "full-10pct") during a
# short run, with perf and DWARF call graphs.
#
#   app/bench/profile/record.sh            # writes target/profile/{gateway,catalog}.data
#   SAMPLER_ARG=0.1 app/bench/profile/record.sh   # the deployed default, 10% sampled
#   perf script -i target/profile/catalog.data | app/bench/profile/attribute.py
#
# Needs perf, Docker, faultline-local/postgres:15, faultline-local/redis:7.0,
# faultline-local/rabbitmq:3.10 and faultline-local/postgres-exporter:0.11
# (compose/build-images).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
out=$root/target/profile
mkdir -p "$out"
cd "$root"
cargo build --release -p faultline-bench
bench=$root/target/release/faultline-bench
"$bench" --rounds "${ROUNDS:-2}" --json "$out/bench.json" >"$out/bench.log" 2>&1 &
bench_pid=$!
trap 'kill $bench_pid 2>/dev/null || true' EXIT

# The full variant's processes: logs and metrics on, traces exported, and
# (the gateway) its catalog cache off. The cached gateway exports to another
# sink, so the catalog is matched by the gateway's OTLP endpoint.
find_role() { # role -> "pid endpoint" lines
  local pid env
  for pid in $(pgrep -f "faultline-bench $1" || true); do
    env=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null) || continue
    grep -qx 'FAULTLINE_LOGS=on' <<<"$env" || continue
    grep -qx 'FAULTLINE_METRICS=on' <<<"$env" || continue
    grep -q '^OTEL_EXPORTER_OTLP_ENDPOINT=' <<<"$env" || continue
    # Which sampling: every request (always_on), or a ratio of them.
    if [[ -n ${SAMPLER_ARG:-} ]]; then
      grep -qx "OTEL_TRACES_SAMPLER_ARG=$SAMPLER_ARG" <<<"$env" || continue
    else
      grep -qx 'OTEL_TRACES_SAMPLER=always_on' <<<"$env" || continue
    fi
    # Figure 5's gateways and their catalog use Redis; figure 1's do not.
    grep -q '^FAULTLINE_REDIS_URL=' <<<"$env" && continue
    if [[ $1 == gateway ]]; then grep -qx 'FAULTLINE_CATALOG_CACHE_TTL=0s' <<<"$env" || continue; fi
    echo "$pid $(grep '^OTEL_EXPORTER_OTLP_ENDPOINT=' <<<"$env")"
  done
}
for _ in $(seq 1 180); do
  grep -q calibrating "$out/bench.log" && break
  kill -0 $bench_pid 2>/dev/null || { cat "$out/bench.log"; exit 1; }
  sleep 1
done
read -r gateway endpoint < <(find_role gateway | head -1)
catalog=$(find_role catalog | grep -F "$endpoint" | head -1 | cut -d' ' -f1)
echo "gateway pid $gateway, catalog pid $catalog"
perf record -F 199 --call-graph dwarf,16384 -o "$out/gateway.data" -p "$gateway" -- sleep "${SECONDS_TO_RECORD:-200}" &
perf record -F 199 --call-graph dwarf,16384 -o "$out/catalog.data" -p "$catalog" -- sleep "${SECONDS_TO_RECORD:-200}" &
wait $bench_pid
trap - EXIT
wait
echo "written: $out/gateway.data $out/catalog.data"
