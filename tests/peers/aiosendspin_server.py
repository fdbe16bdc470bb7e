#!/usr/bin/env python3
"""Serve one WAV file to Sendspin players, using aiosendspin 10.2.1.

Run it inside the peers root, in the venv-sendspin venv. The server listens on
127.0.0.1 only, at the fixed Sendspin path /sendspin, and accepts cleartext
(unencrypted) v1 clients because it is built with allow_unencrypted=True, as
well as encrypted Sendspin 1.0 clients. An unpaired 1.0 client gets roles and
playback only with --trust-unpaired. With --strict the server rejects any
client that deviates from the 1.0 spec, cleartext ones included, instead of
logging the deviation. A client whose pairing token was given
with --pair-token pairs by its pairing PSK, after which the server
re-handshakes to the new long-term PSK and activates it. It
starts no mDNS: SendspinServer.start_server() in 10.2.1 always opens a Zeroconf
instance and advertises the server, so this script never calls it and serves
SendspinServer.on_client_connect from its own aiohttp application instead.

When the first client with the player@v1 role has finished its handshake,
including its first client/state, the server starts a stream for that client's
group and plays the file once. Players that arrive later join the same group.
Each player gets the first format of its supported_formats that aiosendspin can
encode, unless --codec names pcm, flac or opus: the script then sets
aiosendspin's preferred-format override for each player to that codec, which
picks the player's first format of that codec.
Once the last sample's playback time has passed it sends stream/end, waits up
to --grace seconds for the clients to leave, and exits. A client counts as a
player once the server has activated its player@v1 role: an unpaired 1.0
client that the server has not approved negotiates the role in its hello, but
gets no active roles and so no stream. When the group's last player leaves
before the end of the file, aiosendspin stops the stream. The script then
prints stream_stopped and plays the file from its start to the next player.

With --stdin-commands the script also reads operator commands from stdin, one
per line, and runs each with the SendspinServer API, as a server's operator
would at run time:
    trust CLIENT_ID    approve the client for unpaired playback
                       (SendspinServer.trust_unpaired). A connected client gets
                       a new server/activate with its roles, and its player
                       then joins the stream as any other player does.
    unpair CLIENT_ID   drop the pairing with a connected client
                       (SendspinServer.unpair), which sends it server/unpair.
Each command prints one event: trusted, unpaired or command_failed. Empty
lines are skipped, and the script stops reading at the end of stdin.

Every line on stdout is one JSON object with an "event" key, in this order:
    identity             server_id (the server's public key)
    listening            port, url
    source               the WAV file's PCM: format, frames, bytes, sha256
    client               a client finished its handshake: client_id, name, roles
                         (its supported roles), active_roles
    codec_override       with --codec: client_id, codec, applied (false when
                         the player offers no format of that codec)
    stream_started       the first commit: play_start_us, source format
    stream_start_sent    a stream/start on the wire: client_id, player format, resampled
    stream_end_sent      a stream/end on the wire: client_id
    client_disconnected  client_id, goodbye_reason
    sent                 per client: the audio payloads it was sent, with sha256
                         and send-ahead (chunk timestamp minus server clock
                         right after the write, in microseconds)
    stream_stopped       the group's last player left during the file: group_id
    trusted              after `trust`: client_id, connected, active_roles
                         (empty when the client is not connected)
    unpaired             after `unpair`: client_id
    command_failed       a command that could not run: command, reason
    finished             reason: "end_of_file" or "timeout"
Diagnostics and library logs go to stderr.

With --no-wire-tap the script records nothing per chunk: the wire tap keeps
every payload sent, which would add its own memory and CPU time to a load
test of the server.

With --loop the server is a target for `resonate stress`: it plays the file
in a loop until --timeout. aiosendspin stops a group's stream when the
group's last player leaves; the next player to arrive then starts the loop
again in its own group ("stream_stopped", then "stream_started" again).

Exit status: 0 after the file played to the end (with --loop: after
--timeout), 3 after --timeout, 1 on an invalid WAV file or a failed bind, 2
on invalid arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import socket
import sys
import wave
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiosendspin.clock import Clock, RawMonotonicClock
from aiosendspin.models.core import StreamEndMessage, StreamStartMessage
from aiosendspin.models.types import AudioCodec, ConnectionReason
from aiosendspin.noise import Identity, InMemoryServerPairingStore, TrustedUnpairedClient
from aiosendspin.noise.keys import psk_id_for
from aiosendspin.noise.pairing_token import decode_psk_token
from aiosendspin.noise.trust_store import StagedPairingPsk
from aiosendspin.server.push_stream import StreamStoppedError
from aiosendspin.server import (
    AudioFormat,
    ClientAddedEvent,
    ClientDisconnectedEvent,
    SendspinEvent,
    SendspinGroup,
    SendspinServer,
)
from aiosendspin.server.connection import SendspinConnection

LOGGER = logging.getLogger("aiosendspin_server")

# Binary message type of a player audio chunk in Sendspin v1.
AUDIO_CHUNK_TYPE = 4
# Source audio handed to PushStream per commit. The library re-chunks PCM into
# its own 25 ms frames, so this only sets how often the script yields.
COMMIT_BLOCK_US = 100_000
# How far ahead of the playhead the script lets the stream run, in microseconds.
MAX_BUFFER_US = 5_000_000
# Extra wait after the last sample's playback time before stream/end.
END_MARGIN_S = 0.2


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


@dataclass
class Source:
    """PCM read from the WAV file."""

    pcm: bytes
    audio_format: AudioFormat
    frames: int

    def describe(self) -> dict[str, int]:
        return {
            "sample_rate": self.audio_format.sample_rate,
            "channels": self.audio_format.channels,
            "bit_depth": self.audio_format.bit_depth,
        }


def read_wav(path: str) -> Source:
    """Read a signed integer PCM WAV file of 16, 24 or 32 bits.

    Raises ValueError for 8-bit files, which are unsigned and which
    aiosendspin 10.2.1 cannot take as input.
    """
    with wave.open(path, "rb") as wav:
        width = wav.getsampwidth()
        channels = wav.getnchannels()
        rate = wav.getframerate()
        frames = wav.getnframes()
        pcm = wav.readframes(frames)
    if width not in (2, 3, 4):
        raise ValueError(f"{path}: {8 * width}-bit PCM is not supported, use 16, 24 or 32 bits")
    audio_format = AudioFormat(sample_rate=rate, bit_depth=8 * width, channels=channels)
    return Source(pcm=pcm, audio_format=audio_format, frames=len(pcm) // (width * channels))


@dataclass
class SentAudio:
    """Audio payloads that one client's connection wrote to the socket."""

    timestamps_us: list[int] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    # Chunk timestamp minus the server clock right after the write, in microseconds.
    send_ahead_us: list[int] = field(default_factory=list)
    player_format: dict[str, Any] | None = None

    def pcm(self) -> bytes:
        return b"".join(self.payloads)


class WireTap:
    """Records what each connection puts on the wire.

    It wraps two private SendspinConnection methods of aiosendspin 10.2.1:
    _send_binary_data, after which the frame has been written (late chunks the
    library drops never reach it), and _send_message, for stream/start and
    stream/end. A library upgrade may rename them; the script then fails at
    start-up with an AttributeError instead of reporting wrong data.
    """

    def __init__(self, source: Source, clock: Clock) -> None:
        self.source = source
        self.clock = clock
        self.by_client: dict[str, SentAudio] = {}

    def install(self) -> None:
        tap = self
        send_binary = SendspinConnection._send_binary_data
        send_message = SendspinConnection._send_message

        async def tapped_send_binary(conn, wsock, role, entry, buffer_tracker):  # type: ignore[no-untyped-def]
            await send_binary(conn, wsock, role, entry, buffer_tracker)
            binary = entry.binary
            if binary is not None and binary.player_audio_header:
                if binary.message_type == AUDIO_CHUNK_TYPE:
                    sent = tap.sent_for(conn)
                    sent.timestamps_us.append(entry.timestamp_us)
                    sent.payloads.append(bytes(binary.data))
                    sent.send_ahead_us.append(entry.timestamp_us - tap.clock.now_us())

        async def tapped_send_message(conn, wsock, message):  # type: ignore[no-untyped-def]
            await send_message(conn, wsock, message)
            if isinstance(message, StreamStartMessage) and message.payload.player is not None:
                tap.on_stream_start(conn, message.payload.player)
            elif isinstance(message, StreamEndMessage):
                emit("stream_end_sent", client_id=client_id_of(conn), roles=message.payload.roles)

        SendspinConnection._send_binary_data = tapped_send_binary  # type: ignore[method-assign]
        SendspinConnection._send_message = tapped_send_message  # type: ignore[method-assign]

    def sent_for(self, conn: SendspinConnection) -> SentAudio:
        return self.by_client.setdefault(client_id_of(conn), SentAudio())

    def on_stream_start(self, conn: SendspinConnection, player: Any) -> None:
        player_format = {
            "codec": player.codec.value,
            "sample_rate": player.sample_rate,
            "channels": player.channels,
            "bit_depth": player.bit_depth,
        }
        self.sent_for(conn).player_format = player_format
        source = self.source.describe()
        converted = any(player_format[key] != source[key] for key in source)
        emit(
            "stream_start_sent",
            client_id=client_id_of(conn),
            player=player_format,
            resampled=converted,
            note=(
                f"payloads are {player_format['codec']} packets encoded by FFmpeg through PyAV"
                if player_format["codec"] != "pcm"
                else "the server converts the source to this format with FFmpeg's aresample "
                "filter through PyAV (soxr when the FFmpeg build has it, else swr), so "
                "payloads differ from the source PCM"
                if converted
                else "same format as the source: PCM is passed through unchanged"
            ),
        )


def client_id_of(conn: SendspinConnection) -> str:
    # NOTE: private attribute of aiosendspin 10.2.1; the connection has no public client id.
    return str(getattr(conn, "_client_id", None) or "unknown")


class Player:
    """Waits for the first player, then plays the source once to its group."""

    def __init__(self, server: SendspinServer, source: Source, codec: str | None) -> None:
        self.server = server
        self.source = source
        self.codec = codec
        self.group: SendspinGroup | None = None
        self.first_player = asyncio.Event()
        self.background: set[asyncio.Task[None]] = set()

    def on_event(self, server: SendspinServer, event: SendspinEvent) -> None:
        if isinstance(event, ClientAddedEvent):
            self.on_client_added(event.client_id)
        elif isinstance(event, ClientDisconnectedEvent):
            reason = event.goodbye_reason.value if event.goodbye_reason is not None else None
            emit("client_disconnected", client_id=event.client_id, goodbye_reason=reason)

    def on_client_added(self, client_id: str) -> None:
        # ClientAddedEvent fires once the handshake, including the first
        # client/state, is done, so the player is already marked available.
        client = self.server.get_client(client_id)
        if client is None:
            LOGGER.error("client %s was added but is not known to the server", client_id)
            return
        info = client.info_or_none
        roles = list(info.supported_roles) if info is not None else []
        emit(
            "client",
            client_id=client_id,
            name=client.name,
            roles=roles,
            active_roles=client.active_role_ids,
        )
        self.take_player(client_id, client)

    def take_player(self, client_id: str, client: Any) -> None:
        """Add the client to the stream's group if its player role is active.

        client.check_role(Roles.PLAYER) is no test for this: in 10.2.1 it
        reads the roles negotiated from the client's hello, which an unpaired
        client that the server has not approved also has. Only the roles of
        server/activate create the role object that a stream reaches.
        """
        if not client.roles_by_family("player"):
            return
        if self.codec is not None:
            self.force_codec(client_id, client)
        if self.group is None or not self.first_player.is_set():
            self.group = client.group
            self.first_player.set()
        elif client.group is not self.group:
            task = asyncio.get_running_loop().create_task(self.group.add_client(client))
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    def force_codec(self, client_id: str, client: Any) -> None:
        """Make the player's stream use --codec, through aiosendspin's override."""
        role = client.role("player@v1")
        applied = False
        if role is None:
            LOGGER.error("client %s has no player@v1 role object", client_id)
        else:
            applied = bool(role.set_preferred_format(None, AudioCodec(self.codec)))
        emit("codec_override", client_id=client_id, codec=self.codec, applied=applied)

    async def play_once(self) -> None:
        """Plays the source once to the group of the first player. When
        aiosendspin stops the stream before the end, because the group's last
        player left, it plays the file from its start to the next player."""
        while True:
            await self.first_player.wait()
            assert self.group is not None
            try:
                await self.play_file(self.group)
                return
            except StreamStoppedError:
                emit("stream_stopped", group_id=self.group.group_id)
                self.first_player.clear()

    async def play_file(self, group: SendspinGroup) -> None:
        source = self.source
        fmt = source.audio_format
        frame_bytes = fmt.channels * fmt.bit_depth // 8
        block_frames = max(1, fmt.sample_rate * COMMIT_BLOCK_US // 1_000_000)
        block_bytes = block_frames * frame_bytes

        stream = group.start_stream()
        end_us: int | None = None
        for offset in range(0, len(source.pcm), block_bytes):
            block = source.pcm[offset : offset + block_bytes]
            stream.prepare_audio(block, fmt)
            start_us = await stream.commit_audio()
            if end_us is None:
                emit(
                    "stream_started",
                    group_id=group.group_id,
                    play_start_us=start_us,
                    source=source.describe(),
                )
            end_us = start_us + (len(block) // frame_bytes) * 1_000_000 // fmt.sample_rate
            await stream.sleep_to_limit_buffer(MAX_BUFFER_US)

        # Chunks go out ahead of their playback time, so once the last one's
        # end has passed they are all on the wire and stream/end (queued at
        # the current time) cannot overtake them.
        if end_us is not None:
            remaining_s = (end_us - stream.now_us()) / 1_000_000
            await asyncio.sleep(max(0.0, remaining_s) + END_MARGIN_S)
        stream.stop()

    async def play_looped(self) -> None:
        """Plays the source in a loop to the group of the first player, for
        ever. aiosendspin stops a group's stream when its last player leaves;
        the next player to arrive then starts the loop again in its group."""
        source = self.source
        fmt = source.audio_format
        frame_bytes = fmt.channels * fmt.bit_depth // 8
        block_bytes = max(1, fmt.sample_rate * COMMIT_BLOCK_US // 1_000_000) * frame_bytes
        while True:
            await self.first_player.wait()
            assert self.group is not None
            stream = self.group.start_stream()
            emit("stream_started", group_id=self.group.group_id, source=source.describe())
            try:
                while True:
                    for offset in range(0, len(source.pcm), block_bytes):
                        stream.prepare_audio(source.pcm[offset : offset + block_bytes], fmt)
                        await stream.commit_audio()
                        await stream.sleep_to_limit_buffer(MAX_BUFFER_US)
            except StreamStoppedError:
                emit("stream_stopped", group_id=self.group.group_id)
                self.first_player.clear()

    async def wait_for_clients_to_leave(self, grace_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self.server.connected_clients and loop.time() < deadline:
            await asyncio.sleep(0.05)


class Operator:
    """Runs the operator commands of --stdin-commands with the server's API."""

    def __init__(self, server: SendspinServer, player: Player) -> None:
        self.server = server
        self.player = player

    async def read(self) -> None:
        """Runs each line of stdin as a command until the end of stdin."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        except (OSError, ValueError) as error:
            # A regular file is no pipe: asyncio cannot read it without blocking.
            LOGGER.error("reading commands from stdin failed: %s; pipe them in instead", error)
            return
        while line := await reader.readline():
            text = line.decode(errors="replace").strip()
            if text:
                await self.run(text)

    async def run(self, text: str) -> None:
        words = text.split()
        if len(words) != 2 or words[0] not in ("trust", "unpair"):
            emit(
                "command_failed",
                command=text,
                reason="unknown command; expected `trust CLIENT_ID` or `unpair CLIENT_ID`",
            )
            return
        name, client_id = words
        try:
            if name == "trust":
                await self.trust(client_id)
            else:
                # Raises ValueError when the client is not connected.
                await self.server.unpair(client_id)
                emit("unpaired", client_id=client_id)
        except Exception as error:  # noqa: BLE001 - any failure is reported, not fatal
            LOGGER.exception("command %r failed", text)
            emit("command_failed", command=text, reason=f"{type(error).__name__}: {error}")

    async def trust(self, client_id: str) -> None:
        # trust_unpaired sends the new server/activate and creates the role
        # objects before it returns, so the player role is already active here.
        await self.server.trust_unpaired(client_id)
        client = self.server.get_client(client_id)
        connected = client is not None and client.connection is not None
        active_roles = client.active_role_ids if connected else []
        emit("trusted", client_id=client_id, connected=connected, active_roles=active_roles)
        if connected:
            self.player.take_player(client_id, client)


def bind_listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    sock.setblocking(False)
    return sock


def emit_sent(tap: WireTap, sent_out: str | None) -> None:
    first = True
    for client_id, sent in tap.by_client.items():
        pcm = sent.pcm()
        sizes = sorted({len(payload) for payload in sent.payloads})
        emit(
            "sent",
            client_id=client_id,
            chunks=len(sent.payloads),
            bytes=len(pcm),
            chunk_bytes=sizes,
            first_timestamp_us=sent.timestamps_us[0] if sent.timestamps_us else None,
            last_timestamp_us=sent.timestamps_us[-1] if sent.timestamps_us else None,
            first_send_ahead_us=sent.send_ahead_us[0] if sent.send_ahead_us else None,
            min_send_ahead_us=min(sent.send_ahead_us) if sent.send_ahead_us else None,
            max_send_ahead_us=max(sent.send_ahead_us) if sent.send_ahead_us else None,
            sha256=hashlib.sha256(pcm).hexdigest(),
            format=sent.player_format,
        )
        if first and sent_out is not None:
            with open(sent_out, "wb") as out:
                out.write(pcm)
        first = False


class TrustingPairingStore(InMemoryServerPairingStore):
    """Pairing store that approves every client for unpaired playback.

    Like the one of the `sendspin serve` 9.0.0 command: an encrypted client
    that connects with the Sentinel PSK and offers unpaired access gets its
    roles and playback without pairing.
    """

    async def trusted_unpaired(self, client_id: str) -> TrustedUnpairedClient | None:
        return await super().trusted_unpaired(client_id) or TrustedUnpairedClient(client_id)


async def serve(args: argparse.Namespace, source: Source) -> int:
    clock = RawMonotonicClock()
    tap = WireTap(source, clock)
    if not args.no_wire_tap:
        tap.install()

    loop = asyncio.get_running_loop()
    store = TrustingPairingStore() if args.trust_unpaired else InMemoryServerPairingStore()
    for text in args.pair_token:
        token = decode_psk_token(text)
        staged = StagedPairingPsk(psk_id_for(token.pairing_psk), token.pairing_psk)
        await store.stage_pairing_psk(token.client_id, staged)
    identity = Identity.generate()
    emit("identity", server_id=identity.peer_id)
    server = SendspinServer(
        loop,
        identity,
        args.name,
        pairing_store=store,
        allow_unencrypted=not args.strict,
        allow_noncompliant_clients=not args.strict,
        clock=clock,
    )
    player = Player(server, source, args.codec)
    server.add_event_listener(player.on_event)

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
    if args.dial:
        # A listening player: the server opens the connection, for playback,
        # and retries until the player listens.
        server.connect_to_client(
            args.dial, connection_reason=ConnectionReason.PLAYBACK, retry_initial_connection=True
        )
    emit("source", path=args.wav, format=source.describe(), frames=source.frames,
         bytes=len(source.pcm), sha256=hashlib.sha256(source.pcm).hexdigest())

    commands: asyncio.Task[None] | None = None
    if args.stdin_commands:
        commands = loop.create_task(Operator(server, player).read())

    status = 0
    try:
        async with asyncio.timeout(args.timeout):
            if args.loop:
                await player.play_looped()
            await player.play_once()
            await player.wait_for_clients_to_leave(args.grace)
        reason = "end_of_file"
    except TimeoutError:
        reason = "timeout"
        # With --loop, only the timeout ends the run.
        status = 0 if args.loop else 3
    if commands is not None:
        commands.cancel()
    emit_sent(tap, args.sent_out)
    emit("finished", reason=reason)

    await server.close()
    await runner.cleanup()
    return status


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve a WAV file to cleartext Sendspin v1 players (aiosendspin 10.2.1)."
    )
    parser.add_argument("--wav", required=True, help="signed 16/24/32-bit PCM WAV file to play once")
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one (default 0)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="exit after this many seconds (default 30)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=1.0,
        help="seconds to wait for clients to leave after stream/end (default 1)",
    )
    parser.add_argument(
        "--sent-out", help="write the PCM payloads sent to the first player to this file"
    )
    parser.add_argument(
        "--codec",
        choices=["pcm", "flac", "opus"],
        help="stream this codec to every player that offers it (default: the player's first choice)",
    )
    parser.add_argument(
        "--loop",
        action="store_true",
        help="play the file in a loop until --timeout, restarting in the next player's group "
        "when aiosendspin stops the stream (a target for resonate stress)",
    )
    parser.add_argument("--name", default="resonate interop server", help="server name in server/hello")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="reject clients that deviate from the Sendspin 1.0 spec (and cleartext clients)",
    )
    parser.add_argument(
        "--pair-token",
        action="append",
        default=[],
        help="stage this version-0 pairing token, so its client pairs by pairing PSK (repeatable)",
    )
    parser.add_argument(
        "--trust-unpaired",
        action="store_true",
        help="approve every encrypted (Sendspin 1.0) client for playback without pairing",
    )
    parser.add_argument(
        "--dial",
        help="also connect to the listening player at this ws:// URL (on 127.0.0.1), retrying until it listens",
    )
    parser.add_argument(
        "--no-wire-tap",
        action="store_true",
        help="do not record what each connection writes, so a load test measures aiosendspin "
        "alone (no sent events, and stream_start_sent and stream_end_sent are not printed)",
    )
    parser.add_argument(
        "--stdin-commands",
        action="store_true",
        help="read operator commands from stdin, one per line: `trust CLIENT_ID` or "
        "`unpair CLIENT_ID` (see the module docstring)",
    )
    parser.add_argument("--verbose", action="store_true", help="log aiosendspin at DEBUG to stderr")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is out of range 0-65535")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        source = read_wav(args.wav)
    except (OSError, EOFError, wave.Error, ValueError) as error:
        LOGGER.error(
            "reading WAV file %s failed: %r; pass a signed 16, 24 or 32-bit PCM WAV file",
            args.wav,
            error,
        )
        return 1
    return asyncio.run(serve(args, source))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
