#!/usr/bin/env bash
# Measures `resonate serve` at scale with `resonate stress --scenario
# fan-out` in a separate process: for each codec and client count, how many
# chunks arrive late, and the server's CPU time and resident memory per
# session, idle (controller-only clients) and streaming (players).
#
# Usage: benches/fanout.sh [OUT_DIR]
# Settings come from the environment:
#   RESONATE_BIN  binary to measure [target/release/resonate, built first]
#   DURATION      seconds of each measurement after every client joined [60]
#   COUNTS        client counts ["10 100 1000"]
#   CODECS        codecs streamed to players ["pcm flac opus"]
#   MODES         idle, streaming or both ["idle streaming"]
#   PORT          loopback port of the server; PORT+1 is its telemetry [18940]
#   TELEMETRY     off runs the server without its telemetry feed, which
#                 leaves the server closes column empty [on]
# Each run appends its raw figures to OUT_DIR/raw.csv: mode, codec,
# clients, server CPU seconds, wall seconds, and VmRSS in KiB before the
# clients, after they joined and at the end.
# Every run is bounded: stress stops after its ramp plus DURATION, and
# the server it started is ended by pid. docs/benchmarks.md explains the
# columns.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR=${1:-target/fanout}
DURATION=${DURATION:-60}
COUNTS=${COUNTS-"10 100 1000"}
CODECS=${CODECS-"pcm flac opus"}
MODES=${MODES-"idle streaming"}
PORT=${PORT:-18940}
TELEMETRY_PORT=$((PORT + 1))
TELEMETRY=${TELEMETRY:-on}
if [[ -z "${RESONATE_BIN:-}" ]]; then
    cargo build --release --locked --bin resonate >&2
    RESONATE_BIN=${CARGO_TARGET_DIR:-target}/release/resonate
fi
if (( DURATION < 6 )); then
    echo "fanout.sh: invalid DURATION=$DURATION: use at least 6 seconds" >&2
    exit 2
fi
mkdir -p "$OUT_DIR"
CLOCK_TICKS=$(getconf CLK_TCK)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
now_s() { date +%s.%N; }
established() { ss -Htn state established "( sport = :$PORT )" | wc -l; }

# Waits until the check in "$@" succeeds, for at most $1 seconds.
wait_for() {
    local limit=$1
    shift
    local deadline=$(( $(date +%s) + limit ))
    until "$@"; do
        if (( $(date +%s) >= deadline )); then
            return 1
        fi
        sleep 0.2
    done
}
listening() { [[ $(ss -Htln "( sport = :$PORT )" | wc -l) -gt 0 ]]; }
all_joined() { [[ $(established) -ge $1 ]]; }

server_pid=""
stress_pid=""
cleanup() {
    [[ -n "$stress_pid" ]] && kill "$stress_pid" 2>/dev/null || true
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

# run_one MODE CODEC COUNT: MODE is idle or streaming.
run_one() {
    local mode=$1 codec=$2 count=$3
    local name="$mode-$codec-$count"
    local codec_args=()
    local role_args=()
    local serve_telemetry=(--telemetry "127.0.0.1:$TELEMETRY_PORT")
    local stress_telemetry=(--server-telemetry "ws://127.0.0.1:$TELEMETRY_PORT/")
    if [[ $TELEMETRY == off ]]; then
        serve_telemetry=()
        stress_telemetry=()
    fi
    if [[ $mode == idle ]]; then
        role_args=(--roles controller)
    else
        codec_args=(--codec "$codec")
    fi
    "$RESONATE_BIN" serve --tone sine --loop --no-mdns -q \
        --listen "127.0.0.1:$PORT" "${serve_telemetry[@]}" \
        --max-sessions $((count + 64)) "${codec_args[@]}" 2> "$OUT_DIR/$name.serve.log" &
    server_pid=$!
    wait_for 20 listening || { echo "fanout.sh: serve did not listen on port $PORT within 20 s" >&2; exit 1; }
    sleep 1
    local rss_before
    rss_before=$(rss_kib "$server_pid")

    "$RESONATE_BIN" stress --server "ws://127.0.0.1:$PORT/sendspin" \
        "${stress_telemetry[@]}" \
        --scenario fan-out --clients "$count" --duration "$DURATION" --seed 1 \
        "${role_args[@]}" --json > "$OUT_DIR/$name.json" 2> "$OUT_DIR/$name.stress.log" &
    stress_pid=$!
    if ! wait_for $((60 + count / 10)) all_joined "$count"; then
        echo "fanout.sh: $name: only $(established) of $count clients connected" >&2
    fi
    # The first chunks of a stream go out in a burst; measure the steady state.
    sleep 2
    local t0 c0 t1 c1 rss_joined rss_end
    t0=$(now_s); c0=$(cpu_ticks "$server_pid"); rss_joined=$(rss_kib "$server_pid")
    sleep $((DURATION - 4))
    t1=$(now_s); c1=$(cpu_ticks "$server_pid"); rss_end=$(rss_kib "$server_pid")
    wait "$stress_pid" || true
    stress_pid=""
    kill "$server_pid"
    wait "$server_pid" || true
    server_pid=""

    python3 - "$OUT_DIR/$name.json" "$mode" "$codec" "$count" "$CLOCK_TICKS" \
        "$t0" "$c0" "$t1" "$c1" "$rss_before" "$rss_joined" "$rss_end" <<'PY'
import json, sys
path, mode, codec, count, ticks, t0, c0, t1, c1, rss0, rss1, rss2 = sys.argv[1:]
count, ticks = int(count), int(ticks)
cpu_s = (float(c1) - float(c0)) / ticks
wall_s = float(t1) - float(t0)
with open(path) as f:
    scenario = json.load(f)["scenarios"][0]
server = scenario.get("server") or {}
closed = server.get("closed_by_cause", {})
lead = scenario["latency"].get("min_chunk_lead", {})
growth_kib = max(int(rss1), int(rss2)) - int(rss0)
with open(path.rsplit("/", 1)[0] + "/raw.csv", "a") as raw:
    raw.write("%s,%s,%d,%.3f,%.3f,%s,%s,%s\n" % (mode, codec, count, cpu_s, wall_s, rss0, rss1, rss2))
print("| %s | %s | %d | %d | %d | %d | %s | %.1f%% | %.0f µs | %.1f KiB | %s |" % (
    mode, codec if mode == "streaming" else "-", count, scenario["handshakes"],
    scenario["chunks_judged"], scenario["chunks_late"],
    "%.0f ms" % (lead["p50_us"] / 1000) if lead else "-",
    100 * cpu_s / wall_s, 1e6 * cpu_s / wall_s / count, growth_kib / count,
    ", ".join("%s %d" % kv for kv in sorted(closed.items())) or "none"))
PY
}

echo "| mode | codec | clients | joined | chunks judged | late | min lead p50 | server CPU | CPU per client per s | RSS growth per session | server closes |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
if [[ " $MODES " == *" idle "* ]]; then
    for count in $COUNTS; do
        run_one idle - "$count"
    done
fi
if [[ " $MODES " == *" streaming "* ]]; then
    for codec in $CODECS; do
        for count in $COUNTS; do
            run_one streaming "$codec" "$count"
        done
    done
fi
