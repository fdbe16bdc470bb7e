#!/usr/bin/env bash
# Measures what one `resonate play` costs. The figures are CPU per
# real-time second while it plays PCM, FLAC and Opus into the null sink
# with drift correction at work, in cleartext Sendspin v1 and in Sendspin
# 1.0. Then the size of the binary, and the time from starting the process
# to its first audible block.
#
#   benches/player_cost.sh [OUT_DIR]
#
# Environment: RESONATE_BIN (default: builds target/release/resonate),
# DURATION seconds per run (default 20), PORT of the server (default
# 18960), CODECS (default "pcm flac opus"), DIALECTS (default
# "sendspin-v1 sendspin"). Everything runs on loopback.
#
# CPU comes from /proc/PID/stat (user plus system ticks of the player
# process), sampled every 0.2 s until it exits. The first audible block is
# the first line of the player's --sync-log whose content_server_us is set;
# its heard_monotonic_us is compared with /proc/uptime at the start, so the
# start-up time has a resolution of 10 ms.
set -euo pipefail

out_dir=${1:-target/player-cost}
duration=${DURATION:-20}
port=${PORT:-18960}
codecs=${CODECS:-pcm flac opus}
dialects=${DIALECTS:-sendspin-v1 sendspin}
mkdir -p "$out_dir"

if [ -n "${RESONATE_BIN:-}" ]; then
    bin=$RESONATE_BIN
else
    cargo build --release --quiet
    bin=target/release/resonate
fi
ticks_per_second=$(getconf CLK_TCK)
state_dir=$(mktemp -d)
servers=()
cleanup() {
    for pid in "${servers[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$state_dir"
}
trap cleanup EXIT

# Starts a looping tone server in `dialect` on `port`.
start_server() {
    local dialect=$1 port=$2
    local admission=()
    if [ "$dialect" = sendspin ]; then
        admission=(--allow-unpaired)
    fi
    "$bin" serve --tone sine --loop --no-mdns --listen "127.0.0.1:$port" \
        --dialect "$dialect" "${admission[@]}" --state-dir "$state_dir/server-$dialect" -q \
        2>"$out_dir/serve-$dialect.log" &
    servers+=("$!")
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    echo "player_cost: the $dialect server on port $port did not start; see $out_dir/serve-$dialect.log" >&2
    exit 1
}

# Prints the user plus system ticks of process `pid`.
cpu_ticks() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    set -- $rest
    echo $((${12} + ${13}))
}

echo "binary: $bin, $(stat -c %s "$bin") bytes"
if command -v strip >/dev/null; then
    strip -o "$out_dir/resonate.stripped" "$bin"
    echo "stripped of debug information and symbols: $(stat -c %s "$out_dir/resonate.stripped") bytes"
    rm -f "$out_dir/resonate.stripped"
fi
echo
echo "| dialect | codec | CPU per real-time second | corrections | start-up to first audible block |"
echo "|---|---|---|---|---|"
next_port=$port
for dialect in $dialects; do
    start_server "$dialect" "$next_port"
    for codec in $codecs; do
        log="$out_dir/$dialect-$codec.jsonl"
        rm -f "$log"
        start_uptime=$(cut -d' ' -f1 /proc/uptime)
        "$bin" play --server "ws://127.0.0.1:$next_port" --dialect "$dialect" \
            --state-dir "$state_dir/player-$dialect-$codec" --codec "$codec" --output null \
            --sink-drift-ppm 100 --sync-log "$log" --duration "$duration" -q \
            2>"$out_dir/play-$dialect-$codec.log" &
        player=$!
        ticks=0
        while sample=$(cpu_ticks "$player"); do
            ticks=$sample
            sleep 0.2
        done
        wait "$player"
        awk -v ticks="$ticks" -v hz="$ticks_per_second" -v duration="$duration" \
            -v start="$start_uptime" -v dialect="$dialect" -v codec="$codec" '
            /"content_server_us":[0-9-]/ && first == "" {
                match($0, /"heard_monotonic_us":[0-9]+/)
                first = substr($0, RSTART + 21, RLENGTH - 21) / 1e6
            }
            /"correction_frames":-?1,/ { corrections++ }
            END {
                if (first == "") {
                    print "player_cost: " dialect " " codec " played no audio" > "/dev/stderr"
                    exit 1
                }
                printf "| %s | %s | %.0f us | %d | %.2f s |\n", dialect, codec,
                    ticks / hz / duration * 1e6, corrections, first - start
            }' "$log"
    done
    next_port=$((next_port + 1))
done
