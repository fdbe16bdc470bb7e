#!/usr/bin/env python3
"""Serve a WAV file to legacy Resonate players, using aioresonate 0.13.2.

Run it inside the peers root, in the venv-resonate venv. The server listens on
127.0.0.1 only, on a free port, at the legacy path /resonate. It starts no
mDNS: ResonateServer.start_server() in 0.13.2 always opens a Zeroconf instance
on every interface, so this script never calls it and serves
ResonateServer.on_client_connect from its own aiohttp application instead.

When the first client has finished its handshake, the server plays the file
once to that client's group. Once the last sample's playback time has passed
it stops the group, which sends stream/end, waits up to --grace seconds for
the client to leave, and exits.

With --shared-group the server is a target for `resonate stress`: every
client that finishes its handshake joins the shared group, which plays the
file in a loop. When that group no longer plays (aioresonate stops a group
when its last member leaves), the next player to arrive starts playback in
its own group, which becomes the shared group. The server runs until
--timeout or a SIGTERM and then exits with status 0.

Every line on stdout is one JSON object with an "event" key:
    listening   port, url
    source      the WAV file's format and frames
    client      client_id of the player that started the stream
    finished    reason: "end_of_file" or "timeout"
With --shared-group, "client" is printed for each player that starts a new
shared group, and "finished" with reason "timeout", or "terminated" after a
SIGTERM, together with the
server's own view at that moment: "connected" (client ids the server holds),
"members" (client ids in any group it started playback in),
"members_not_connected", "groups_started", and "streaming" (whether the
shared group still plays).
Diagnostics and library logs go to stderr.

Exit status: 0 after the file played to the end (with --shared-group: after
--timeout or SIGTERM), 3 after --timeout, 1 on an invalid WAV file, 2 on invalid
arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
import wave
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web
from aioresonate.server import ResonateServer
from aioresonate.server.server import ClientAddedEvent, ClientRemovedEvent, ResonateEvent
from aioresonate.models.types import PlaybackStateType, Roles
from aioresonate.server.group import ResonateGroup
from aioresonate.server.stream import AudioFormat, MediaStream

LOGGER = logging.getLogger("aioresonate_server")

# Source PCM handed to the library per generator step, in frames.
BLOCK_FRAMES = 4800
# Extra wait after the last sample's playback time before stopping the group.
END_MARGIN_S = 0.5


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


def read_wav(path: str) -> tuple[AudioFormat, bytes] | None:
    """Reads a 16- or 24-bit PCM WAV file; None (after logging why) otherwise."""
    with wave.open(path, "rb") as wav:
        width = wav.getsampwidth()
        channels = wav.getnchannels()
        rate = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    if width not in (2, 3):
        LOGGER.error("%s: %d-bit PCM is not supported, use 16 or 24 bits", path, 8 * width)
        return None
    audio_format = AudioFormat(rate, 8 * width, channels)
    emit("source", sample_rate=rate, channels=channels, bit_depth=8 * width, frames=len(pcm) // (width * channels))
    return audio_format, pcm


def frame_bytes(audio_format: AudioFormat) -> int:
    return audio_format.bit_depth // 8 * audio_format.channels


async def blocks(audio_format: AudioFormat, pcm: bytes, *, loop_forever: bool) -> AsyncGenerator[bytes, None]:
    """Yields the PCM in blocks of BLOCK_FRAMES frames, once or forever."""
    step = BLOCK_FRAMES * frame_bytes(audio_format)
    while True:
        for offset in range(0, len(pcm), step):
            yield pcm[offset : offset + step]
        if not loop_forever:
            return


async def listen(server: ResonateServer) -> web.AppRunner:
    """Serves the legacy path on a free loopback port and prints its URL."""
    app = web.Application()
    app.router.add_get("/resonate", server.on_client_connect)
    runner = web.AppRunner(app)
    await runner.setup()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    await web.SockSite(runner, listener).start()
    emit("listening", port=port, url=f"ws://127.0.0.1:{port}/resonate")
    return runner


async def serve_once(path: str, timeout: float, grace: float) -> int:
    source = read_wav(path)
    if source is None:
        return 1
    audio_format, pcm = source

    loop = asyncio.get_running_loop()
    server = ResonateServer(loop, "aioresonate-peer", "aioresonate peer")
    finished = asyncio.Event()
    left = asyncio.Event()
    started = False

    async def play(client_id: str) -> None:
        client = server.get_client(client_id)
        if client is None:
            LOGGER.error("client %s left before the stream started", client_id)
            return
        media = MediaStream(
            main_channel_source=blocks(audio_format, pcm, loop_forever=False), main_channel_format=audio_format
        )
        start_us = await client.group.play_media(media)
        # play_media returns the server time at which the first frame plays.
        end_s = start_us / 1_000_000 + len(pcm) / frame_bytes(audio_format) / audio_format.sample_rate + END_MARGIN_S
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
    runner = await listen(server)

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


class SharedGroup:
    """Puts every client into the group that plays the source in a loop.

    Behaves as an application using the library would: a client joins the
    playing group when there is one; otherwise a player starts playback in
    its own group, which then becomes the shared group.
    """

    def __init__(self, server: ResonateServer, audio_format: AudioFormat, pcm: bytes) -> None:
        self.server = server
        self.audio_format = audio_format
        self.pcm = pcm
        self.group: ResonateGroup | None = None
        # The shared group's play_media call, which runs until it stops.
        self.playback: asyncio.Task[None] | None = None
        # Every group this script started playback in, for the final view.
        self.started: list[ResonateGroup] = []
        # Joins run one at a time: aioresonate's add_client awaits between
        # its checks and its changes.
        self.lock = asyncio.Lock()

    def describe(self) -> dict[str, Any]:
        """The server's own view at the end: who is connected, who is in the
        groups this script started, and members that are no longer connected."""
        connected = {client.client_id for client in self.server.clients}
        members = {client.client_id for group in self.started for client in group.clients}
        return {
            "connected": sorted(connected),
            "members": sorted(members),
            "members_not_connected": sorted(members - connected),
            "groups_started": len(self.started),
            "streaming": self.group is not None and self.group.state == PlaybackStateType.PLAYING,
        }

    def playing(self) -> bool:
        """Whether the shared group's playback runs: from the start of
        play_media (which reports the PLAYING state only after some awaits)
        until it returns."""
        return self.playback is not None and not self.playback.done()

    async def on_event(self, event: ResonateEvent) -> None:
        if isinstance(event, ClientAddedEvent):
            async with self.lock:
                await self.place(event.client_id)

    async def place(self, client_id: str) -> None:
        client = self.server.get_client(client_id)
        if client is None:
            return
        if self.playing():
            assert self.group is not None
            if client.group is not self.group:
                await self.group.add_client(client)
            return
        if not client.check_role(Roles.PLAYER):
            # Nothing plays; the client stays in its own group.
            return
        self.group = client.group
        self.started.append(client.group)
        emit("client", client_id=client_id)
        self.playback = asyncio.get_running_loop().create_task(self.play(client.group))

    async def play(self, group: ResonateGroup) -> None:
        media = MediaStream(
            main_channel_source=blocks(self.audio_format, self.pcm, loop_forever=True),
            main_channel_format=self.audio_format,
        )
        try:
            await group.play_media(media)
        except Exception:  # noqa: BLE001 - a stress target keeps serving
            LOGGER.exception("the shared group's stream failed")


async def serve_shared(path: str, timeout: float) -> int:
    source = read_wav(path)
    if source is None:
        return 1
    server = ResonateServer(asyncio.get_running_loop(), "aioresonate-peer", "aioresonate peer")
    shared = SharedGroup(server, *source)
    server.add_event_listener(shared.on_event)
    runner = await listen(server)
    ended = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, ended.set)
    try:
        await asyncio.wait_for(ended.wait(), timeout)
        reason = "terminated"
    except TimeoutError:
        reason = "timeout"
    emit("finished", reason=reason, **shared.describe())
    await runner.cleanup()
    await server.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", help="16- or 24-bit PCM WAV file to play once")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up (exit 3)")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds to wait for the client to leave")
    parser.add_argument(
        "--shared-group", action="store_true", help="put every client in one group that plays the file in a loop"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if args.shared_group:
        return asyncio.run(serve_shared(args.wav, args.timeout))
    return asyncio.run(serve_once(args.wav, args.timeout, args.grace))


if __name__ == "__main__":
    sys.exit(main())
