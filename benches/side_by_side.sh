#!/usr/bin/env bash
# Runs the same fan-out load against `resonate serve` and against the
# aiosendspin 10.2.1 server in cleartext transition mode (in the peers
# root). Both run in one command, one after the other, with the same WAV
# source. The script then prints a table of ratios: PCM players fed in
# real time, resident memory per idle session, and CPU time per
# streaming player.
#
# Usage: RESONATE_PEERS_RUN=/path/to/peers/run benches/side_by_side.sh [OUT_DIR]
# Settings come from the environment:
#   RESONATE_BIN        binary to measure [target/release/resonate, built first]
#   DURATION            seconds of each measurement after every client joined [60]
#   IDLE_COUNT          idle sessions held open on each server [2000]
#   RESONATE_COUNTS     PCM player counts tried on `resonate serve` ["10 100 1000 2000"]
#   AIOSENDSPIN_COUNTS  PCM player counts tried on aiosendspin ["10 25 50 100 200 400"]
#   SOURCE_SECONDS      length of the looped 48 kHz 16-bit stereo WAV source [30]
#   PORT                loopback port of the servers [18950]
#   SUMMARY_ONLY        1 runs nothing and prints the ratios of the runs
#                       already in OUT_DIR [0]
# Each server's streaming counts stop after the first run that is not
# real time (benches/fanout.sh defines it), so the largest count that was
# real time is the one reported as sustained. `resonate serve` runs without
# its telemetry feed, as aiosendspin has none. Raw figures go to
# OUT_DIR/raw.csv, per-run logs and stress reports to OUT_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR=${1:-target/side-by-side}
DURATION=${DURATION:-60}
IDLE_COUNT=${IDLE_COUNT:-2000}
RESONATE_COUNTS=${RESONATE_COUNTS-"10 100 1000 2000"}
AIOSENDSPIN_COUNTS=${AIOSENDSPIN_COUNTS-"10 25 50 100 200 400"}
SOURCE_SECONDS=${SOURCE_SECONDS:-30}
PORT=${PORT:-18950}
SUMMARY_ONLY=${SUMMARY_ONLY:-0}
if [[ $SUMMARY_ONLY != 1 && -z "${RESONATE_PEERS_RUN:-}" ]]; then
    echo "side_by_side.sh: RESONATE_PEERS_RUN is not set: give the peers root's run script" >&2
    exit 2
fi
if [[ $SUMMARY_ONLY != 1 && -z "${RESONATE_BIN:-}" ]]; then
    cargo build --release --locked --bin resonate >&2
    RESONATE_BIN=${CARGO_TARGET_DIR:-target}/release/resonate
fi
export RESONATE_BIN RESONATE_PEERS_RUN DURATION PORT SUMMARY_ONLY

mkdir -p "$OUT_DIR"
if [[ $SUMMARY_ONLY != 1 ]]; then
    rm -f "$OUT_DIR/raw.csv"
    SOURCE="$OUT_DIR/source.wav"
    python3 tests/peers/make_wav.py --out "$SOURCE" --seconds "$SOURCE_SECONDS" \
        --rate 48000 --channels 2 --bit-depth 16 > /dev/null
    export SOURCE

    # run_server SERVER COUNTS: the idle run, then PCM players at each count.
    run_server() {
        SERVER=$1 COUNTS=$2 IDLE_COUNTS=$IDLE_COUNT CODECS=pcm MODES="idle streaming" \
            STOP_AT_FAILURE=1 TELEMETRY=off benches/fanout.sh "$OUT_DIR"
    }
    run_server resonate "$RESONATE_COUNTS"
    run_server aiosendspin "$AIOSENDSPIN_COUNTS" | tail -n +3
    echo
fi

python3 - "$OUT_DIR/raw.csv" <<'PY'
import csv, sys

names = {"resonate": "resonate serve", "aiosendspin": "aiosendspin 10.2.1"}
runs = {name: {"idle": [], "streaming": []} for name in names}
with open(sys.argv[1]) as f:
    for row in csv.reader(f):
        server, mode, codec, clients, cpu_s, wall_s, rss0, rss1, rss2, joined, judged, late, other, ok = row
        runs[server][mode].append({
            "clients": int(clients),
            "cpu_per_client_us": 1e6 * float(cpu_s) / float(wall_s) / int(clients),
            "growth_kib": (max(int(rss1), int(rss2)) - int(rss0)) / int(clients),
            "ok": ok == "1",
        })


def sustained(server):
    ok = [run["clients"] for run in runs[server]["streaming"] if run["ok"]]
    return max(ok) if ok else 0


def first_failure(server):
    failed = [run["clients"] for run in runs[server]["streaming"] if not run["ok"]]
    return str(min(failed)) if failed else "none"


def idle_growth(server):
    idle = runs[server]["idle"]
    return idle[-1]["growth_kib"] if idle else None


def cpu_at(server, clients):
    for run in runs[server]["streaming"]:
        if run["clients"] == clients and run["ok"]:
            return run["cpu_per_client_us"]
    return None


def ratio(ours, theirs, higher_is_better):
    if not ours or not theirs:
        return "-"
    return "%.1f" % (ours / theirs if higher_is_better else theirs / ours)


ours, theirs = "resonate", "aiosendspin"
print("| figure | %s | %s | advantage of resonate serve |" % (names[ours], names[theirs]))
print("|---|---|---|---|")
print("| PCM players fed in real time (largest count tried) | %d | %d | %s |" % (
    sustained(ours), sustained(theirs), ratio(sustained(ours), sustained(theirs), True)))
print("| first count tried that was not real time | %s | %s | |" % (first_failure(ours), first_failure(theirs)))
growth = [idle_growth(ours), idle_growth(theirs)]
idle_clients = runs[ours]["idle"][-1]["clients"] if runs[ours]["idle"] else 0
print("| RSS growth per idle session, %d sessions | %s | %s | %s |" % (
    idle_clients, *["%.1f KiB" % g if g is not None else "-" for g in growth], ratio(*growth, False)))
common = sorted({run["clients"] for run in runs[ours]["streaming"] if run["ok"]}
                & {run["clients"] for run in runs[theirs]["streaming"] if run["ok"]})
for clients in common:
    cpu = [cpu_at(ours, clients), cpu_at(theirs, clients)]
    print("| server CPU per PCM player per s, %d players | %.0f µs | %.0f µs | %s |" % (
        clients, *cpu, ratio(*cpu, False)))
PY
