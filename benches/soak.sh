#!/usr/bin/env bash
# Soak: one `resonate serve` under repeated stress scenario mixes for a
# bounded time, sampling its resident memory, sessions and tasks.
#
# Usage: benches/soak.sh [MINUTES] [CLIENTS] [OUT_DIR]
#   MINUTES  how long to keep the load on (default 30)
#   CLIENTS  virtual clients per scenario (default 300)
#   OUT_DIR  where samples.csv and the stress reports go (default a new
#            directory under /tmp)
#
# Everything runs on 127.0.0.1. The server and every stress run stop by
# themselves: each stress run is bounded by --duration, and the loop stops
# starting runs after MINUTES.
set -euo pipefail

minutes=${1:-30}
clients=${2:-300}
out=${3:-$(mktemp -d /tmp/resonate-soak.XXXXXX)}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/release/resonate"

cargo build --release --locked --manifest-path "$root/Cargo.toml" >&2

"$bin" serve --tone sine --dialect sendspin-v1 --listen 127.0.0.1:0 --no-mdns --json \
    --telemetry 127.0.0.1:0 \
    --max-sessions 100000 --max-pending-handshakes 100000 \
    --max-messages-per-second 1000000 \
    > "$out/serve.jsonl" 2> "$out/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

url=""
feed=""
for _ in $(seq 1 100); do
    url=$(python3 -c 'import json,sys
for line in open(sys.argv[1]):
    event = json.loads(line)
    if event.get("event") == "listening": print(event["url"]); break' "$out/serve.jsonl" 2>/dev/null || true)
    feed=$(python3 -c 'import json,sys
for line in open(sys.argv[1]):
    event = json.loads(line)
    if event.get("event") == "telemetry": print(event["addr"]); break' "$out/serve.jsonl" 2>/dev/null || true)
    [ -n "$url" ] && [ -n "$feed" ] && break
    sleep 0.1
done
if [ -z "$url" ] || [ -z "$feed" ]; then
    echo "soak: serve did not report its URL and telemetry address; see $out/serve.log" >&2
    exit 2
fi

# Samples: seconds since start, resident KiB, live sessions, live tasks.
sample() {
    local rss metrics sessions tasks
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status")
    metrics=$(curl -s "http://$feed/metrics" || true)
    sessions=$(echo "$metrics" | awk '/^resonate_sessions\{/ {sum += $2} END {print sum + 0}')
    tasks=$(echo "$metrics" | awk '/^resonate_tasks_live / {print $2}')
    echo "$1,$rss,${sessions:-},${tasks:-}" >> "$out/samples.csv"
}

echo "seconds,rss_kib,sessions_live,tasks_live" > "$out/samples.csv"
start=$(date +%s)
end=$((start + minutes * 60))
sample 0
run=0
while [ "$(date +%s)" -lt "$end" ]; do
    run=$((run + 1))
    "$bin" stress --server "$url" --server-telemetry "ws://$feed/" \
        --scenario all --duration 20 --clients "$clients" --seed "$run" --json \
        > "$out/stress-$run.json" 2> "$out/stress-$run.log" || true
    sample $(($(date +%s) - start))
done

# Let the last sessions go, then take the final sample.
sleep 5
sample $(($(date +%s) - start))
echo "soak: $run stress runs in $minutes min; samples in $out/samples.csv" >&2
head -n 2 "$out/samples.csv" >&2
tail -n 1 "$out/samples.csv" >&2
