#!/usr/bin/env bash
# Measures a server at scale with `resonate stress --scenario fan-out` in a
# separate process. For each codec and client count it reports how many
# chunks arrive late or leave gaps, and the server's CPU time and resident
# memory per session, idle (controller-only clients) and streaming
# (players).
#
# Usage: benches/fanout.sh [OUT_DIR]
# Settings come from the environment:
#   SERVER        resonate (`resonate serve`) or aiosendspin (the aiosendspin
#                 10.2.1 server in cleartext transition mode, driven by
#                 tests/peers/aiosendspin_server.py in the peers root, which
#                 needs RESONATE_PEERS_RUN and SOURCE) [resonate]
#   SOURCE        WAV file the server loops; without it `resonate serve`
#                 plays its built-in sine tone [none]
#   RESONATE_BIN  binary to measure [target/release/resonate, built first]
#   DURATION      seconds of each measurement after every client joined [60]
#   COUNTS        client counts of streaming runs ["10 100 1000"]
#   IDLE_COUNTS   client counts of idle runs [COUNTS]
#   CODECS        codecs streamed to players ["pcm flac opus"]
#   MODES         idle, streaming or both ["idle streaming"]
#   STOP_AT_FAILURE  1 stops a codec's streaming counts after the first run
#                 that is not real time (see below) [0]
#   PORT          loopback port of the server; PORT+1 is its telemetry [18940]
#   TELEMETRY     off runs `resonate serve` without its telemetry feed, which
#                 leaves the server closes column empty; aiosendspin runs
#                 always go without [on]
# A streaming run is real time when every client joined, chunks were
# judged and none arrived late. Stress must also have found no other
# violation during the measurement, such as a gap from a dropped chunk,
# a stream that ended or a connection the server closed. Connections still open 5 s after the
# clients' close frames at the end (`not_closed`) are listed but do not
# count against it, since they come after the measurement.
# Each run appends its raw figures to OUT_DIR/raw.csv: server, mode, codec,
# clients, server CPU seconds, wall seconds, VmRSS in KiB before the
# clients, after they joined and at the end, clients joined, chunks judged,
# chunks late, other violations during the measurement, and 1 when the
# run was real time.
# Every run is bounded: stress stops after its ramp plus DURATION, and
# the server it started is ended by pid. docs/benchmarks.md explains the
# columns.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR=${1:-target/fanout}
DURATION=${DURATION:-60}
SERVER=${SERVER:-resonate}
SOURCE=${SOURCE:-}
COUNTS=${COUNTS-"10 100 1000"}
IDLE_COUNTS=${IDLE_COUNTS-$COUNTS}
STOP_AT_FAILURE=${STOP_AT_FAILURE:-0}
CODECS=${CODECS-"pcm flac opus"}
MODES=${MODES-"idle streaming"}
PORT=${PORT:-18940}
TELEMETRY_PORT=$((PORT + 1))
TELEMETRY=${TELEMETRY:-on}
if [[ -z "${RESONATE_BIN:-}" ]]; then
    cargo build --release --locked --bin resonate >&2
    RESONATE_BIN=${CARGO_TARGET_DIR:-target}/release/resonate
fi
case $SERVER in
    resonate) ;;
    aiosendspin)
        if [[ -z "${RESONATE_PEERS_RUN:-}" || -z "$SOURCE" ]]; then
            echo "fanout.sh: SERVER=aiosendspin needs RESONATE_PEERS_RUN (the peers root's run script) and SOURCE (a WAV file)" >&2
            exit 2
        fi
        TELEMETRY=off
        ;;
    *)
        echo "fanout.sh: invalid SERVER=$SERVER: use resonate or aiosendspin" >&2
        exit 2
        ;;
esac
if [[ -n "$SOURCE" && ! -f "$SOURCE" ]]; then
    echo "fanout.sh: SOURCE=$SOURCE not found: give a WAV file" >&2
    exit 2
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
    local name="$SERVER-$mode-$codec-$count"
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
    if [[ $SERVER == aiosendspin ]]; then
        # The run script execs into the driver, so $! is the Python
        # process. Its timeout outlasts the ramp and the measurement.
        "$RESONATE_PEERS_RUN" venv-sendspin --cwd tests/peers python3 aiosendspin_server.py \
            --wav "$(realpath "$SOURCE")" --port "$PORT" --loop --no-wire-tap \
            --timeout $((DURATION + 180 + count / 10)) "${codec_args[@]}" \
            > "$OUT_DIR/$name.serve.out" 2> "$OUT_DIR/$name.serve.log" &
    else
        local source_args=(--tone sine)
        [[ -n "$SOURCE" ]] && source_args=("$SOURCE")
        "$RESONATE_BIN" serve "${source_args[@]}" --dialect sendspin-v1 --loop --no-mdns -q \
            --listen "127.0.0.1:$PORT" "${serve_telemetry[@]}" \
            --max-sessions $((count + 64)) "${codec_args[@]}" 2> "$OUT_DIR/$name.serve.log" &
    fi
    server_pid=$!
    wait_for 30 listening || { echo "fanout.sh: $SERVER did not listen on port $PORT within 30 s" >&2; exit 1; }
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

    python3 - "$OUT_DIR/$name.json" "$SERVER" "$mode" "$codec" "$count" "$CLOCK_TICKS" \
        "$t0" "$c0" "$t1" "$c1" "$rss_before" "$rss_joined" "$rss_end" <<'PY'
import json, sys
path, server_name, mode, codec, count, ticks, t0, c0, t1, c1, rss0, rss1, rss2 = sys.argv[1:]
count, ticks = int(count), int(ticks)
cpu_s = (float(c1) - float(c0)) / ticks
wall_s = float(t1) - float(t0)
with open(path) as f:
    scenario = json.load(f)["scenarios"][0]
server = scenario.get("server") or {}
closed = server.get("closed_by_cause", {})
lead = scenario["latency"].get("min_chunk_lead", {})
growth_kib = max(int(rss1), int(rss2)) - int(rss0)
violations = {kind: group["count"] for kind, group in scenario["violations"].items()}
# Late chunks have their own column. Every other violation counts here,
# except closes that lag after the measurement ended.
other = sum(n for kind, n in violations.items() if kind not in ("audio_late", "not_closed"))
joined = scenario["handshakes"]
judged, late = scenario["chunks_judged"], scenario["chunks_late"]
real_time = joined == count and late == 0 and other == 0 and (mode == "idle" or judged > 0)
with open(path.rsplit("/", 1)[0] + "/raw.csv", "a") as raw:
    raw.write("%s,%s,%s,%d,%.3f,%.3f,%s,%s,%s,%d,%d,%d,%d,%d\n" % (
        server_name, mode, codec, count, cpu_s, wall_s, rss0, rss1, rss2,
        joined, judged, late, other, real_time))
print("| %s | %s | %s | %d | %d | %d | %d | %s | %s | %.1f%% | %.0f µs | %.1f KiB | %s |" % (
    server_name, mode, codec if mode == "streaming" else "-", count, joined, judged, late,
    ", ".join("%s %d" % kv for kv in sorted(violations.items()) if kv[0] != "audio_late") or "none",
    "%.0f ms" % (lead["p50_us"] / 1000) if lead else "-",
    100 * cpu_s / wall_s, 1e6 * cpu_s / wall_s / count, growth_kib / count,
    ", ".join("%s %d" % kv for kv in sorted(closed.items())) or "-"))
sys.exit(0 if real_time else 1)
PY
}

echo "| server | mode | codec | clients | joined | chunks judged | late | other violations | min lead p50 | server CPU | CPU per client per s | RSS growth per session | server closes |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
if [[ " $MODES " == *" idle "* ]]; then
    for count in $IDLE_COUNTS; do
        run_one idle - "$count" || true
    done
fi
if [[ " $MODES " == *" streaming "* ]]; then
    for codec in $CODECS; do
        for count in $COUNTS; do
            if ! run_one streaming "$codec" "$count" && [[ $STOP_AT_FAILURE == 1 ]]; then
                break
            fi
        done
    done
fi
