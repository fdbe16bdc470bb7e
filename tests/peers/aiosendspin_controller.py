#!/usr/bin/env python3
"""Drive a Sendspin v1 server as a controller, metadata and artwork client, using aiosendspin 6.1.1.

Run it inside the peers root, in the venv-sendspin-v1 venv. The client
connects to --url with the controller@v1, metadata@v1 and artwork@v1 roles
and two artwork channels: album covers as JPEG within 120x120 pixels on
channel 0 and as PNG within 64x64 pixels on channel 1.

It waits for the first metadata, then sends each --command in order (a
command with an argument is written NAME:VALUE, such as volume:40 or
mute:true). After each command it waits for the next server/state before
sending the following one. It stops after the last command's server/state,
or after --seconds, sends client/goodbye with reason "shutdown" and closes.

Every line on stdout is one JSON object with an "event" key:
    connected     server_id, name, connection_reason
    group         the group/update payload as the library parsed it
    controller    the controller object of server/state
    metadata      the metadata object of server/state, as sent (nulls kept)
    artwork       channel, bytes, magic (first 8 bytes, hex), width, height
                  (from the PNG header; null for other formats)
    sent          command
    done          ended_by ("commands" or "seconds")
Diagnostics and library logs go to stderr.

Exit status: 0 when every command got its server/state, 3 when --seconds ran
out first, 1 when the connection failed, 2 on invalid arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import struct
import sys
from typing import Any

from aiosendspin.client import SendspinClient
from aiosendspin.models.artwork import ArtworkChannel, ClientHelloArtworkSupport
from aiosendspin.models.types import (
    ArtworkSource,
    GoodbyeReason,
    MediaCommand,
    PictureFormat,
    Roles,
)

LOGGER = logging.getLogger("aiosendspin_controller")


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


def png_size(data: bytes) -> tuple[int, int] | None:
    """Return the width and height from a PNG's IHDR chunk, or None."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def parse_command(text: str) -> tuple[MediaCommand, dict[str, Any]]:
    """Turn NAME or NAME:VALUE into a command and its keyword arguments."""
    name, _, value = text.partition(":")
    command = MediaCommand(name)
    if command is MediaCommand.VOLUME:
        return command, {"volume": int(value)}
    if command is MediaCommand.MUTE:
        return command, {"mute": value == "true"}
    return command, {}


async def drive(args: argparse.Namespace) -> int:
    support = ClientHelloArtworkSupport(
        channels=[
            ArtworkChannel(source=ArtworkSource.ALBUM, format=PictureFormat.JPEG, media_width=120, media_height=120),
            ArtworkChannel(source=ArtworkSource.ALBUM, format=PictureFormat.PNG, media_width=64, media_height=64),
        ]
    )
    client = SendspinClient(
        client_id=args.client_id,
        client_name=args.client_id,
        roles=[Roles.CONTROLLER, Roles.METADATA, Roles.ARTWORK],
        artwork_support=support,
    )
    states: asyncio.Queue[str] = asyncio.Queue()
    first_metadata = asyncio.Event()

    def on_state(payload: Any) -> None:
        raw = payload.to_dict()
        if payload.controller is not None:
            emit("controller", controller=raw.get("controller"))
        states.put_nowait("state")

    def on_metadata(payload: Any) -> None:
        emit("metadata", metadata=payload.to_dict().get("metadata"))
        first_metadata.set()

    def on_group(payload: Any) -> None:
        emit("group", group=payload.to_dict())

    def on_artwork(channel: int, data: bytes) -> None:
        size = png_size(data)
        emit(
            "artwork",
            channel=channel,
            bytes=len(data),
            magic=data[:8].hex(),
            width=size[0] if size else None,
            height=size[1] if size else None,
        )

    client.add_controller_state_listener(on_state)
    client.add_metadata_listener(on_metadata)
    client.add_group_update_listener(on_group)
    client.add_artwork_listener(on_artwork)
    try:
        await client.connect(args.url)
    except (OSError, TimeoutError, RuntimeError) as error:
        LOGGER.error("connecting to %s failed: %s", args.url, error)
        await client.disconnect()
        return 1
    info = client.server_info
    if info is not None:
        emit("connected", server_id=info.server_id, name=info.name, connection_reason=info.connection_reason.value)

    async def run_commands() -> None:
        await first_metadata.wait()
        for text in args.command:
            while not states.empty():
                states.get_nowait()
            command, extra = parse_command(text)
            await client.send_group_command(command, **extra)
            emit("sent", command=text)
            await states.get()

    ended_by = "commands"
    try:
        await asyncio.wait_for(run_commands(), timeout=args.seconds)
    except TimeoutError:
        ended_by = "seconds"
    # Optional: keep reading what follows the last command's server/state.
    await asyncio.sleep(args.linger)
    if client.connected:
        await client.send_goodbye(GoodbyeReason.SHUTDOWN)
    await client.disconnect()
    emit("done", ended_by=ended_by)
    return 0 if ended_by == "commands" else 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--client-id", default="aiosendspin-controller")
    parser.add_argument("--command", action="append", default=[])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--linger", type=float, default=0.0, help="seconds to keep listening after the last command")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    return asyncio.run(drive(args))


if __name__ == "__main__":
    sys.exit(main())
