#!/usr/bin/env python3
"""Record the PCM a legacy Resonate server streams to one player, using aioresonate 0.13.2.

Run it inside the peers root, in the venv-resonate venv. The client connects
to --url (a legacy server's /resonate path) as a player whose player_support
lists exactly one PCM format, from --rate, --channels and --bit-depth. It
starts no mDNS: aioresonate's client module needs only aiohttp. After
server/hello the script sends one player/update (idle, volume 100, not
muted), because the library sends none by itself.

With --group-command, the client also takes the controller role and sends
that legacy group/command (play, pause or stop) --group-command-after
seconds after stream/start.

It keeps every audio chunk received between stream/start and stream/end.
It stops at stream/end, when the server disconnects, or after --seconds,
whichever comes first. Then it closes the socket (the legacy dialect has no
goodbye message) and writes the payloads, sorted by timestamp, to --out as
raw PCM.

Every line on stdout is one JSON object with an "event" key:
    connected     server_id, server name, version
    stream_start  format from the server's stream/start
    group_command command, once it is sent
    stream_end    (no fields)
    done          chunks, bytes, chunk_bytes, first_timestamp_us,
                  last_timestamp_us, sha256, format, ended_by, out
"ended_by" is "stream_end", "disconnected" or "seconds". Diagnostics and
library logs go to stderr.

Exit status: 0 when stream/end arrived, 3 when the recording ended any other
way (the "done" line and --out are still written), 1 when the connection or
handshake failed, 2 on invalid arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
from typing import Any

from aiohttp import ClientError
from aioresonate.client import PCMFormat, ResonateClient
from aioresonate.models.core import StreamStartMessage
from aioresonate.models.player import ClientHelloPlayerSupport
from aioresonate.models.types import MediaCommand, PlayerStateType, Roles

LOGGER = logging.getLogger("aioresonate_client")


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Recorder:
    """Collects audio chunks and watches the stream lifecycle."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []
        self.format: dict[str, Any] | None = None
        self.finished = asyncio.Event()
        self.started = asyncio.Event()
        self.ended_by: str | None = None

    def on_stream_start(self, message: StreamStartMessage) -> None:
        player = message.payload.player
        if player is None:
            return
        self.format = {
            "codec": player.codec,
            "sample_rate": player.sample_rate,
            "channels": player.channels,
            "bit_depth": player.bit_depth,
        }
        emit("stream_start", format=self.format)
        self.started.set()

    def on_audio_chunk(self, timestamp_us: int, payload: bytes, _fmt: PCMFormat) -> None:
        # The library drops chunks that arrive while no PCM stream is running.
        if not self.finished.is_set():
            self.chunks.append((timestamp_us, bytes(payload)))

    def on_stream_end(self) -> None:
        emit("stream_end")
        self.finish("stream_end")

    def on_disconnect(self) -> None:
        self.finish("disconnected")

    def finish(self, reason: str) -> None:
        if not self.finished.is_set():
            self.ended_by = reason
            self.finished.set()


async def record(args: argparse.Namespace) -> int:
    roles = [Roles.PLAYER]
    if args.group_command:
        roles.append(Roles.CONTROLLER)
    client = ResonateClient(
        client_id=args.client_id,
        client_name=args.name or args.client_id,
        roles=roles,
        player_support=ClientHelloPlayerSupport(
            support_codecs=["pcm"],
            support_channels=[args.channels],
            support_sample_rates=[args.rate],
            support_bit_depth=[args.bit_depth],
            buffer_capacity=args.buffer_capacity,
        ),
    )
    recorder = Recorder()
    client.set_stream_start_listener(recorder.on_stream_start)
    client.set_audio_chunk_listener(recorder.on_audio_chunk)
    client.set_stream_end_listener(recorder.on_stream_end)

    try:
        await client.connect(args.url)
    except (OSError, TimeoutError, RuntimeError, ClientError) as error:
        LOGGER.error("connecting to %s failed: %s", args.url, error)
        await client.disconnect()
        return 1
    # Registered after connect(): a handshake failure calls disconnect() itself.
    client.set_disconnect_listener(recorder.on_disconnect)
    info = client.server_info
    if info is not None:
        emit("connected", server_id=info.server_id, name=info.name, version=info.version)
    try:
        await client.send_player_state(state=PlayerStateType.IDLE, volume=100, muted=False)
    except (OSError, RuntimeError, ClientError) as error:
        LOGGER.warning("sending player/update failed: %s", error)

    command_task = None
    if args.group_command:
        command_task = asyncio.create_task(send_group_command(client, recorder, args))
    try:
        await asyncio.wait_for(recorder.finished.wait(), timeout=args.seconds)
    except TimeoutError:
        recorder.finish("seconds")
    if command_task is not None:
        command_task.cancel()
    await client.disconnect()

    write_recording(args, recorder)
    return 0 if recorder.ended_by == "stream_end" else 3


async def send_group_command(client: ResonateClient, recorder: Recorder, args: argparse.Namespace) -> None:
    """Send --group-command once the stream has run for --group-command-after seconds."""
    await recorder.started.wait()
    await asyncio.sleep(args.group_command_after)
    try:
        await client.send_group_command(MediaCommand(args.group_command))
    except (OSError, RuntimeError, ClientError) as error:
        LOGGER.warning("sending group/command %s failed: %s", args.group_command, error)
        return
    emit("group_command", command=args.group_command)


def write_recording(args: argparse.Namespace, recorder: Recorder) -> None:
    # Stable sort: chunks with equal timestamps keep their arrival order.
    chunks = sorted(recorder.chunks, key=lambda chunk: chunk[0])
    pcm = b"".join(payload for _, payload in chunks)
    with open(args.out, "wb") as out:
        out.write(pcm)
    requested = {
        "codec": "pcm",
        "sample_rate": args.rate,
        "channels": args.channels,
        "bit_depth": args.bit_depth,
    }
    emit(
        "done",
        chunks=len(chunks),
        bytes=len(pcm),
        chunk_bytes=sorted({len(payload) for _, payload in chunks}),
        first_timestamp_us=chunks[0][0] if chunks else None,
        last_timestamp_us=chunks[-1][0] if chunks else None,
        sha256=hashlib.sha256(pcm).hexdigest(),
        format=recorder.format or requested,
        ended_by=recorder.ended_by,
        out=args.out,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Record the PCM a legacy Resonate server streams to one player (aioresonate 0.13.2)."
    )
    parser.add_argument("--url", required=True, help="server URL, e.g. ws://127.0.0.1:8927/resonate")
    parser.add_argument("--client-id", required=True, help="client_id sent in client/hello")
    parser.add_argument("--name", help="client name sent in client/hello (default: the client id)")
    parser.add_argument("--rate", type=int, default=48000, help="sample rate in Hz (default 48000)")
    parser.add_argument("--channels", type=int, default=2, choices=(1, 2), help="channels (default 2)")
    parser.add_argument(
        "--bit-depth", type=int, default=16, choices=(16, 24, 32), help="bits per sample (default 16)"
    )
    parser.add_argument("--out", required=True, help="file to write the received raw PCM to")
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="stop recording after this many seconds without stream/end (default 10)",
    )
    parser.add_argument(
        "--buffer-capacity",
        type=int,
        default=32 * 1024 * 1024,
        help="buffer_capacity in client/hello, in bytes (default 32 MiB)",
    )
    parser.add_argument(
        "--group-command",
        choices=("play", "pause", "stop"),
        help="take the controller role and send this group/command after stream/start",
    )
    parser.add_argument(
        "--group-command-after",
        type=float,
        default=1.0,
        help="seconds from stream/start to --group-command (default 1)",
    )
    parser.add_argument("--verbose", action="store_true", help="log aioresonate at DEBUG to stderr")

    args = parser.parse_args(argv)
    if args.rate <= 0:
        parser.error("--rate must be positive")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.group_command_after < 0:
        parser.error("--group-command-after must not be negative")
    if args.buffer_capacity <= 0:
        parser.error("--buffer-capacity must be positive")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(record(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
