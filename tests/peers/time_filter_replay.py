"""Replay clock exchanges through aiosendspin's SendspinTimeFilter.

Reads JSON lines on stdin. A line {"t1", "t2", "t3", "t4"} is one
client/time exchange in microseconds; it is reduced to offset and
max_error and passed to the filter the way aiosendspin's client does
(rounded, stamped with the receive time t4). A line {"query": LOCAL_US}
prints {"server": SERVER_US} with the filter's estimate at that local
time, or {"server": null} before the first exchange.

Run inside the peers root: run venv-sendspin python3 time_filter_replay.py
"""

import json
import sys

from aiosendspin.client.time_sync import SendspinTimeFilter


def main() -> None:
    time_filter = SendspinTimeFilter()
    exchanges = 0
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        item = json.loads(line)
        if "query" in item:
            server = time_filter.compute_server_time(item["query"]) if exchanges else None
            out.write(json.dumps({"server": server}) + "\n")
            continue
        t1, t2, t3, t4 = item["t1"], item["t2"], item["t3"], item["t4"]
        offset = ((t2 - t1) + (t3 - t4)) / 2
        delay = ((t4 - t1) - (t3 - t2)) / 2
        time_filter.update(round(offset), round(delay), t4)
        exchanges += 1
    out.flush()


if __name__ == "__main__":
    main()
