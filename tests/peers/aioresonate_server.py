#!/usr/bin/env python3
"""Serve one WAV file to one legacy Resonate player, using aioresonate 0.13.2.

Run it inside the peers root, in the venv-resonate venv. The server listens on
127.0.0.1 only, on a free port, at the legacy path /resonate. It starts no
mDNS: ResonateServer.start_server() in 0.13.2 always opens a Zeroconf instance
on every interface, so this script never calls it and serves
ResonateServer.on_client_connect from its own aiohttp application instead.

When the first client has finished its handshake, the server plays the file
once to that client's group. Once the last sample's playback time has passed
it stops the group, which sends stream/end, waits up to --grace seconds for
the client to leave, and exits.

Every line on stdout is one JSON object with an "event" key:
    listening   port, url
    source      the WAV file's format and frames
    client      client_id of the player that started the stream
    finished    reason: "end_of_file" or "timeout"
Diagnostics and library logs go to stderr.

Exit status: 0 after the file played to the end, 3 after --timeout, 1 on an
invalid WAV file, 2 on invalid arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
import wave
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web
from aioresonate.server import ResonateServer
from aioresonate.server.server import ClientAddedEvent, ClientRemovedEvent, ResonateEvent
from aioresonate.server.stream import AudioFormat, MediaStream

LOGGER = logging.getLogger("aioresonate_server")

# Source PCM handed to the library per generator step, in frames.
BLOCK_FRAMES = 4800
# Extra wait after the last sample's playback time before stopping the group.
END_MARGIN_S = 0.5


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


async def serve(path: str, timeout: float, grace: float) -> int:
    with wave.open(path, "rb") as wav:
        width = wav.getsampwidth()
        channels = wav.getnchannels()
        rate = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    if width not in (2, 3):
        LOGGER.error("%s: %d-bit PCM is not supported, use 16 or 24 bits", path, 8 * width)
        return 1
    frame_bytes = width * channels
    emit("source", sample_rate=rate, channels=channels, bit_depth=8 * width, frames=len(pcm) // frame_bytes)

    loop = asyncio.get_running_loop()
    server = ResonateServer(loop, "aioresonate-peer", "aioresonate peer")
    finished = asyncio.Event()
    left = asyncio.Event()
    started = False

    async def source() -> AsyncGenerator[bytes, None]:
        step = BLOCK_FRAMES * frame_bytes
        for offset in range(0, len(pcm), step):
            yield pcm[offset : offset + step]

    async def play(client_id: str) -> None:
        client = server.get_client(client_id)
        if client is None:
            LOGGER.error("client %s left before the stream started", client_id)
            return
        media = MediaStream(main_channel_source=source(), main_channel_format=AudioFormat(rate, 8 * width, channels))
        start_us = await client.group.play_media(media)
        # play_media returns the server time at which the first frame plays.
        end_s = start_us / 1_000_000 + len(pcm) / frame_bytes / rate + END_MARGIN_S
        await asyncio.sleep(max(0.0, end_s - loop.time()))
        await client.group.stop()
        finished.set()

    async def on_event(event: ResonateEvent) -> None:
        nonlocal started
        if isinstance(event, ClientAddedEvent) and not started:
            started = True
            emit("client", client_id=event.client_id)
            loop.create_task(play(event.client_id))
        elif isinstance(event, ClientRemovedEvent):
            left.set()

    server.add_event_listener(on_event)
    app = web.Application()
    app.router.add_get("/resonate", server.on_client_connect)
    runner = web.AppRunner(app)
    await runner.setup()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    await web.SockSite(runner, listener).start()
    emit("listening", port=port, url=f"ws://127.0.0.1:{port}/resonate")

    try:
        await asyncio.wait_for(finished.wait(), timeout)
    except TimeoutError:
        emit("finished", reason="timeout")
        await runner.cleanup()
        return 3
    emit("finished", reason="end_of_file")
    try:
        await asyncio.wait_for(left.wait(), grace)
    except TimeoutError:
        LOGGER.warning("the client did not leave within %s s", grace)
    await runner.cleanup()
    await server.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", help="16- or 24-bit PCM WAV file to play once")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up (exit 3)")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds to wait for the client to leave")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    return asyncio.run(serve(args.wav, args.timeout, args.grace))


if __name__ == "__main__":
    sys.exit(main())
