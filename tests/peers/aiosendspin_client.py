#!/usr/bin/env python3
"""Record the PCM a Sendspin v1 server streams to one player, using aiosendspin 6.1.1.

Run it inside the peers root, in the venv-sendspin-v1 venv (aiosendspin 6.1.1
is the last cleartext v1 release). The client connects to --url as a player
that advertises exactly one PCM format, from --rate, --channels and
--bit-depth. After server/hello the library sends client/state itself, with
the player synchronized at volume 100 and not muted. The script sends no
reply to server/command and requests no other format.

It keeps every audio chunk received between stream/start and stream/end. It
stops at the player's stream/end, when the server disconnects, or after
--seconds, whichever comes first. Then it sends client/goodbye with reason
"shutdown", closes the socket and writes the payloads, sorted by timestamp, to
--out as raw PCM.

Every line on stdout is one JSON object with an "event" key:
    connected     server_id, server name, connection_reason
    stream_start  format from the server's stream/start
    stream_clear  roles
    stream_end    roles
    done          chunks, bytes, chunk_bytes, first_timestamp_us,
                  last_timestamp_us, sha256, format, first_lead_us,
                  min_lead_us, ended_by, out
The lead of a chunk is its timestamp minus the server's clock at receipt, as
estimated by the client's time filter (null when the filter has not converged).
"ended_by" is "stream_end", "disconnected" or "seconds". Diagnostics and
library logs go to stderr.

Exit status: 0 when the player's stream/end arrived, 3 when the recording
ended any other way (the "done" line and --out are still written), 1 when
the connection or handshake failed, 2 on invalid arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
from typing import Any

from aiosendspin.client import AudioFormat, SendspinClient
from aiosendspin.models.core import StreamStartMessage
from aiosendspin.models.player import ClientHelloPlayerSupport, SupportedAudioFormat
from aiosendspin.models.types import AudioCodec, GoodbyeReason, PlayerCommand, Roles

LOGGER = logging.getLogger("aiosendspin_client")


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Recorder:
    """Collects audio chunks and watches the stream lifecycle."""

    def __init__(self, client: SendspinClient) -> None:
        self.client = client
        self.chunks: list[tuple[int, bytes]] = []
        # Local receive time of each chunk, in the client's clock (microseconds).
        self.received_at_us: list[int] = []
        self.format: dict[str, Any] | None = None
        self.finished = asyncio.Event()
        self.ended_by: str | None = None

    def on_stream_start(self, message: StreamStartMessage) -> None:
        player = message.payload.player
        if player is None:
            return
        self.format = {
            "codec": player.codec.value,
            "sample_rate": player.sample_rate,
            "channels": player.channels,
            "bit_depth": player.bit_depth,
        }
        emit("stream_start", format=self.format)

    def on_audio_chunk(self, timestamp_us: int, payload: bytes, _fmt: AudioFormat) -> None:
        # The library only calls this between stream/start and stream/end.
        if not self.finished.is_set():
            self.chunks.append((timestamp_us, bytes(payload)))
            self.received_at_us.append(self.client.now_us())

    def on_stream_clear(self, roles: list[str] | None) -> None:
        emit("stream_clear", roles=roles)

    def on_stream_end(self, roles: list[str] | None) -> None:
        emit("stream_end", roles=roles)
        if roles is None or "player" in roles:
            self.finish("stream_end")

    def on_disconnect(self) -> None:
        self.finish("disconnected")

    def leads_us(self) -> list[int] | None:
        """Return how far ahead of the server's clock each chunk arrived, in microseconds.

        Uses the client's time filter in its current state, which has seen more
        server/time replies than it had at the first chunk. Returns None when the
        filter has not converged.
        """
        if not self.client.is_time_synchronized():
            return None
        return [
            timestamp_us - self.client.compute_server_time(received_us)
            for (timestamp_us, _), received_us in zip(self.chunks, self.received_at_us)
        ]

    def finish(self, reason: str) -> None:
        if not self.finished.is_set():
            self.ended_by = reason
            self.finished.set()


async def record(args: argparse.Namespace) -> int:
    pcm_format = SupportedAudioFormat(
        codec=AudioCodec.PCM,
        channels=args.channels,
        sample_rate=args.rate,
        bit_depth=args.bit_depth,
    )
    client = SendspinClient(
        client_id=args.client_id,
        client_name=args.name or args.client_id,
        roles=[Roles.PLAYER],
        player_support=ClientHelloPlayerSupport(
            supported_formats=[pcm_format],
            buffer_capacity=args.buffer_capacity,
            supported_commands=[PlayerCommand.VOLUME, PlayerCommand.MUTE],
        ),
        initial_volume=100,
        initial_muted=False,
    )
    recorder = Recorder(client)
    client.add_stream_start_listener(recorder.on_stream_start)
    client.add_audio_chunk_listener(recorder.on_audio_chunk)
    client.add_stream_clear_listener(recorder.on_stream_clear)
    client.add_stream_end_listener(recorder.on_stream_end)

    try:
        await client.connect(args.url)
    except (OSError, TimeoutError, RuntimeError) as error:
        LOGGER.error("connecting to %s failed: %s", args.url, error)
        await client.disconnect()
        return 1
    # Registered after connect(): a handshake failure calls disconnect() itself.
    client.add_disconnect_listener(recorder.on_disconnect)
    info = client.server_info
    if info is not None:
        emit(
            "connected",
            server_id=info.server_id,
            name=info.name,
            connection_reason=info.connection_reason.value,
        )

    try:
        await asyncio.wait_for(recorder.finished.wait(), timeout=args.seconds)
    except TimeoutError:
        recorder.finish("seconds")

    # Read before disconnect(), which resets the time filter.
    leads_us = recorder.leads_us()
    if client.connected:
        try:
            await client.send_goodbye(GoodbyeReason.SHUTDOWN)
        except (OSError, RuntimeError) as error:
            LOGGER.warning("sending client/goodbye failed: %s", error)
    await client.disconnect()

    write_recording(args, recorder, leads_us)
    return 0 if recorder.ended_by == "stream_end" else 3


def write_recording(
    args: argparse.Namespace, recorder: Recorder, leads_us: list[int] | None
) -> None:
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
        first_lead_us=leads_us[0] if leads_us else None,
        min_lead_us=min(leads_us) if leads_us else None,
        ended_by=recorder.ended_by,
        out=args.out,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Record the PCM a Sendspin v1 server streams to one player (aiosendspin 6.1.1)."
    )

    parser.add_argument("--url", required=True, help="server URL, e.g. ws://127.0.0.1:8927/sendspin")
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
    parser.add_argument("--verbose", action="store_true", help="log aiosendspin at DEBUG to stderr")

    args = parser.parse_args(argv)
    if args.rate <= 0:
        parser.error("--rate must be positive")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
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
