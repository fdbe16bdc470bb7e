#!/usr/bin/env python3
"""Drive a Sendspin 1.0 server as a controller, metadata and artwork client, using aiosendspin 10.2.1.

Run it inside the peers root, in the venv-sendspin venv. The client creates a
fresh identity, whose public key is its client_id, and connects to --url over
the encrypted Sendspin 1.0 transport, unpaired (it has no pairing record
and offers unpaired access). It takes the controller@v1, metadata@v1 and
artwork@v1 roles with two artwork channels, declared in client/state as 1.0
defines: album covers as JPEG at 120x120 pixels on channel 0 and as PNG at
64x64 pixels on channel 1.

It waits for the first metadata, then sends each --command in order (a
command with an argument is written NAME:VALUE, such as volume:40 or
mute:true). After each command it waits for the next controller or
metadata state to become current before sending the following one. After
the last command's state it keeps listening for --linger seconds, or it
stops after --seconds, then sends client/goodbye with reason "shutdown"
and closes.

Every line on stdout is one JSON object with an "event" key:
    identity      client_id
    connected     server_id, name
    received      type and payload of each decrypted JSON message the
                  server sent (server/state, stream/*, group/update,
                  server/activate), before the library parses it
    group         the group/update payload as the library parsed it
    controller    the controller object as the library parsed it
    metadata      the metadata object as the library parsed it, or null
                  when the library discarded it
    artwork       channel, bytes, format ("jpeg", "png" or null), width,
                  height (from the PNG or JPEG header; null otherwise); an
                  empty image (bytes 0) clears the channel
    stream_start  roles the stream/start configured, and its artwork object
    stream_clear  roles (null for all)
    stream_end    roles (null for all)
    sent          command
    error         message, for a command the library rejected
    disconnected  the server closed the connection
    done          ended_by ("commands", "seconds", "disconnect", or "error"
                  after a command the library rejected)
Diagnostics and library logs go to stderr.

Exit status: 0 when every command got its state, 3 when --seconds ran out,
the server closed the connection or the library rejected a command first,
1 when the connection or handshake failed, 2 on invalid arguments.
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
from aiosendspin.client.connection import SendspinConnection
from aiosendspin.models.artwork import ArtworkChannel
from aiosendspin.models.types import ArtworkSource, GoodbyeReason, MediaCommand, PictureFormat, Roles
from aiosendspin.noise import Identity, InMemoryClientPairingStore
from aiosendspin.noise.trust_store import ClientPairingConfig

LOGGER = logging.getLogger("aiosendspin_encrypted_controller")

# Message types whose decrypted JSON is reported as "received".
REPORTED_TYPES = {
    "server/activate",
    "server/state",
    "group/update",
    "stream/start",
    "stream/clear",
    "stream/end",
}

# JPEG start-of-frame markers, which carry the image height and width.
JPEG_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


def image_info(data: bytes) -> tuple[str | None, int | None, int | None]:
    """Return the format, width and height read from a PNG or JPEG header."""
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n":
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:3] != b"\xff\xd8\xff":
        return None, None, None
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return "jpeg", None, None
        marker = data[at + 1]
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if marker in JPEG_SOF_MARKERS:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return "jpeg", width, height
        at += 2 + length
    return "jpeg", None, None


def parse_command(text: str) -> tuple[MediaCommand, dict[str, Any]]:
    """Turn NAME or NAME:VALUE into a command and its keyword arguments."""
    name, _, value = text.partition(":")
    command = MediaCommand(name)
    if command is MediaCommand.VOLUME:
        return command, {"volume": int(value)}
    if command is MediaCommand.MUTE:
        return command, {"mute": value == "true"}
    return command, {}


def report_received_messages() -> None:
    """Wrap the connection's JSON handler to report each decrypted message as sent."""
    handle = SendspinConnection._handle_json_message

    async def reporting(self: SendspinConnection, data: str, received_us: int) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            message = None
        if isinstance(message, dict) and message.get("type") in REPORTED_TYPES:
            emit("received", type=message["type"], payload=message.get("payload"))
        await handle(self, data, received_us)

    SendspinConnection._handle_json_message = reporting  # type: ignore[method-assign]


async def drive(args: argparse.Namespace) -> int:
    report_received_messages()
    identity = Identity.generate()
    emit("identity", client_id=identity.peer_id)
    store = InMemoryClientPairingStore()
    await store.store_pairing_config(ClientPairingConfig(unpaired_access_enabled=True))
    channels = [
        ArtworkChannel(source=ArtworkSource.ALBUM, format=PictureFormat.JPEG, width=120, height=120),
        ArtworkChannel(source=ArtworkSource.ALBUM, format=PictureFormat.PNG, width=64, height=64),
    ]
    client = SendspinClient(
        identity,
        args.name,
        [Roles.CONTROLLER, Roles.METADATA, Roles.ARTWORK],
        pairing_store=store,
        artwork_channels=channels,
    )
    states: asyncio.Queue[str] = asyncio.Queue()
    first_metadata = asyncio.Event()
    disconnected = asyncio.Event()

    def on_state(payload: Any) -> None:
        if payload is None:
            emit("controller", controller=None)
            return
        emit("controller", controller=payload.to_dict().get("controller"))
        states.put_nowait("state")

    def on_metadata(payload: Any) -> None:
        emit("metadata", metadata=None if payload is None else payload.to_dict().get("metadata"))
        if payload is not None:
            first_metadata.set()
            states.put_nowait("state")

    def on_group(payload: Any) -> None:
        emit("group", group=payload.to_dict())

    def on_artwork(channel: int, data: bytes) -> None:
        kind, width, height = image_info(data)
        emit("artwork", channel=channel, bytes=len(data), format=kind, width=width, height=height)

    def on_stream_start(message: Any) -> None:
        artwork = message.payload.artwork
        emit("stream_start", artwork=None if artwork is None else artwork.to_dict())

    def on_disconnect() -> None:
        emit("disconnected")
        disconnected.set()

    client.add_controller_state_listener(on_state)
    client.add_metadata_listener(on_metadata)
    client.add_group_update_listener(on_group)
    client.add_artwork_listener(on_artwork)
    client.add_stream_start_listener(on_stream_start)
    client.add_stream_clear_listener(lambda roles: emit("stream_clear", roles=roles))
    client.add_stream_end_listener(lambda roles: emit("stream_end", roles=roles))
    try:
        await client.connect(args.url)
    except Exception as error:  # noqa: BLE001 - any failure of the handshake ends the run
        LOGGER.error("connecting to %s failed: %s", args.url, error)
        await client.disconnect()
        return 1
    remove_disconnect_listener = client.add_disconnect_listener(on_disconnect)
    info = client.server_info
    if info is not None:
        emit("connected", server_id=info.server_id, name=info.name)

    async def run_commands() -> None:
        await first_metadata.wait()
        for text in args.command:
            while not states.empty():
                states.get_nowait()
            command, extra = parse_command(text)
            try:
                await client.send_group_command(command, **extra)
            except ValueError as error:
                emit("error", command=text, message=str(error))
                raise
            emit("sent", command=text)
            await states.get()

    commands = asyncio.ensure_future(run_commands())
    closed = asyncio.ensure_future(disconnected.wait())
    done, _ = await asyncio.wait({commands, closed}, timeout=args.seconds, return_when=asyncio.FIRST_COMPLETED)
    if commands in done and commands.exception() is None:
        ended_by = "commands"
        # Keep reading what follows the last command's server/state.
        await asyncio.wait({closed}, timeout=args.linger)
    elif commands in done:
        ended_by = "error"
    elif closed in done:
        ended_by = "disconnect"
    else:
        ended_by = "seconds"
    for task in (commands, closed):
        task.cancel()
    # Only a close by the server is reported as "disconnected".
    remove_disconnect_listener()
    if client.connected:
        await client.disconnect(GoodbyeReason.SHUTDOWN)
    emit("done", ended_by=ended_by)
    return 0 if ended_by == "commands" else 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="server URL, e.g. ws://127.0.0.1:8927/sendspin")
    parser.add_argument("--name", default="aiosendspin 10.2.1 controller", help="client name in client/hello")
    parser.add_argument("--command", action="append", default=[], help="controller command, NAME or NAME:VALUE")
    parser.add_argument("--seconds", type=float, default=20.0, help="give up after this many seconds (default 20)")
    parser.add_argument(
        "--linger", type=float, default=0.0, help="seconds to keep listening after the last command (default 0)"
    )
    parser.add_argument("--verbose", action="store_true", help="log aiosendspin at DEBUG to stderr")
    args = parser.parse_args()
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    for text in args.command:
        try:
            parse_command(text)
        except ValueError:
            parser.error(f"--command {text!r} is not a controller command such as next or volume:40")
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(drive(args))


if __name__ == "__main__":
    sys.exit(main())
