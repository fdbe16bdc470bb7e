#!/usr/bin/env python3
"""Serve track metadata to cleartext Sendspin v1 clients, using aiosendspin 10.2.1.

Run it inside the peers root, in the venv-sendspin venv. The server accepts
cleartext (unencrypted) v1 clients because it is built with
allow_unencrypted=True, listens on 127.0.0.1 only, at the fixed Sendspin path
/sendspin, starts no mDNS and streams no audio. When a client with the
metadata@v1 role has finished its handshake, the script sets the track given
on the command line as the metadata of that client's group, and the repeat
mode and shuffle state through the group's controller role, which aiosendspin
10.2.1 also restates in the metadata object for v1 clients. aiosendspin then
sends the client server/state with it.

Every line on stdout is one JSON object with an "event" key, in this order:
    listening     port, url
    client        a client finished its handshake: client_id, name, roles
    metadata_set  the fields set: title, artist, album_artist, album, year,
                  track, track_progress, track_duration, playback_speed,
                  repeat, shuffle, and timestamp_us, the server clock time
                  at which track_progress was the position
    finished      reason: "timeout"
Diagnostics and library logs go to stderr.

Exit status: 0 after --timeout, 1 on a failed bind, 2 on invalid arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
from typing import Any

from aiohttp import web
from aiosendspin.clock import RawMonotonicClock
from aiosendspin.models.types import RepeatMode, Roles
from aiosendspin.noise import Identity, InMemoryServerPairingStore
from aiosendspin.server import ClientAddedEvent, SendspinEvent, SendspinServer
from aiosendspin.server.roles.metadata.state import Metadata

LOGGER = logging.getLogger("aiosendspin_metadata_server")


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Track:
    """Sets the track of the command line on the group of each metadata client."""

    def __init__(self, server: SendspinServer, clock: RawMonotonicClock, args: argparse.Namespace) -> None:
        self.server = server
        self.clock = clock
        self.args = args

    def on_event(self, server: SendspinServer, event: SendspinEvent) -> None:
        if isinstance(event, ClientAddedEvent):
            self.on_client_added(event.client_id)

    def on_client_added(self, client_id: str) -> None:
        client = self.server.get_client(client_id)
        if client is None:
            LOGGER.error("client %s was added but is not known to the server", client_id)
            return
        info = client.info_or_none
        roles = list(info.supported_roles) if info is not None else []
        emit("client", client_id=client_id, name=client.name, roles=roles)
        if not client.check_role(Roles.METADATA):
            return
        group = client.group
        metadata_role = group.group_role("metadata")
        controller_role = group.group_role("controller")
        if metadata_role is None or controller_role is None:
            LOGGER.error("the group of %s has no metadata or controller role", client_id)
            return
        args = self.args
        timestamp_us = self.clock.now_us()
        metadata_role.set_metadata(
            Metadata(
                title=args.title,
                artist=args.artist,
                album_artist=args.album_artist,
                album=args.album,
                year=args.year,
                track=args.track,
                track_progress=args.progress_ms,
                track_duration=args.duration_ms,
                playback_speed=args.speed,
                timestamp_us=timestamp_us,
            ),
            timestamp_us=timestamp_us,
        )
        controller_role.set_repeat(RepeatMode(args.repeat))
        controller_role.set_shuffle(args.shuffle)
        emit(
            "metadata_set",
            title=args.title,
            artist=args.artist,
            album_artist=args.album_artist,
            album=args.album,
            year=args.year,
            track=args.track,
            track_progress=args.progress_ms,
            track_duration=args.duration_ms,
            playback_speed=args.speed,
            repeat=args.repeat,
            shuffle=args.shuffle,
            timestamp_us=timestamp_us,
        )


def bind_listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    sock.setblocking(False)
    return sock


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    clock = RawMonotonicClock()
    server = SendspinServer(
        loop,
        Identity.generate(),
        args.name,
        pairing_store=InMemoryServerPairingStore(),
        allow_unencrypted=True,
        clock=clock,
    )
    track = Track(server, clock, args)
    server.add_event_listener(track.on_event)

    app = web.Application()
    app.router.add_get(SendspinServer.API_PATH, server.on_client_connect)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        sock = bind_listener(args.port)
    except OSError as error:
        LOGGER.error("binding 127.0.0.1:%d failed: %s", args.port, error)
        await runner.cleanup()
        return 1
    await web.SockSite(runner, sock).start()
    port = sock.getsockname()[1]
    emit("listening", port=port, url=f"ws://127.0.0.1:{port}{SendspinServer.API_PATH}")

    await asyncio.sleep(args.timeout)
    emit("finished", reason="timeout")
    await server.close()
    await runner.cleanup()
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve track metadata to cleartext Sendspin v1 clients (aiosendspin 10.2.1)."
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one (default 0)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="exit after this many seconds (default 30)"
    )
    parser.add_argument("--name", default="resonate metadata interop", help="server name in server/hello")
    parser.add_argument("--title", required=True)
    parser.add_argument("--artist", required=True)
    parser.add_argument("--album-artist")
    parser.add_argument("--album", required=True)
    parser.add_argument("--year", type=int)
    parser.add_argument("--track", type=int)
    parser.add_argument("--progress-ms", type=int, default=0, help="track position in milliseconds")
    parser.add_argument("--duration-ms", type=int, default=0, help="track length in milliseconds, 0 if unknown")
    parser.add_argument("--speed", type=int, default=1000, help="playback speed times 1000, 0 is paused")
    parser.add_argument("--repeat", choices=["off", "one", "all"], default="off")
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="log aiosendspin at DEBUG to stderr")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is out of range 0-65535")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.progress_ms < 0 or args.duration_ms < 0 or args.speed < 0:
        parser.error("--progress-ms, --duration-ms and --speed must not be negative")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
