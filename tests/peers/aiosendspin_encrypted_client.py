#!/usr/bin/env python3
"""Record the PCM a Sendspin 1.0 server streams to one player, using aiosendspin 10.2.1.

Run it inside the peers root, in the venv-sendspin venv. The client creates a
fresh identity, whose public key is its client_id. It connects to --url over
the encrypted Sendspin 1.0 transport with the cipher suite --suite and offers
the pairing PSK method and unpaired access. It plays as a player that
advertises exactly one PCM format, from --rate, --channels and --bit-depth.
It holds no pairing record, so the server admits it on the Sentinel PSK,
unless the server holds the pairing token of --private-key and --pairing-psk:
then the two pair by pairing PSK first.

Recording, stopping and the output are those of aiosendspin_client.py:
every line on stdout is one JSON object with an "event" key, "identity"
(client_id) first, then connected, stream_start, stream_clear, stream_end and
done. Exit status: 0 when the player's stream/end arrived, 3 when the
recording ended any other way, 1 when the connection or handshake failed, 2
on invalid arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiosendspin.client import AudioFormat, SendspinClient
from aiosendspin.models.player import ClientHelloPlayerSupport, SupportedAudioFormat
from aiosendspin.models.types import AudioCodec, GoodbyeReason, PlayerCommand, Roles
from aiosendspin.noise import Identity, InMemoryClientPairingStore
from aiosendspin.noise.keys import b64url_decode, psk_id_for
from aiosendspin.noise.session import NoiseCipherSuite
from aiosendspin.noise.trust_store import ClientPairingConfig, PairingPsk

from aiosendspin_client import LOGGER, Recorder, emit, write_recording


class EncryptedRecorder(Recorder):
    """Recorder for the 10.2.1 audio callback, which adds send_ahead."""

    def on_audio_chunk_with_lead(
        self, timestamp_us: int, payload: bytes, fmt: AudioFormat, _send_ahead: int
    ) -> None:
        self.on_audio_chunk(timestamp_us, payload, fmt)


async def record(args: argparse.Namespace) -> int:
    if args.private_key:
        identity = Identity.from_private_bytes(b64url_decode(args.private_key))
    else:
        identity = Identity.generate()
    emit("identity", client_id=identity.peer_id)
    store = InMemoryClientPairingStore()
    await store.store_pairing_config(ClientPairingConfig(unpaired_access_enabled=True))
    if args.pairing_psk:
        psk = b64url_decode(args.pairing_psk)
        await store.set_pairing_psk(PairingPsk(psk_id_for(psk), psk))
    pcm_format = SupportedAudioFormat(
        codec=AudioCodec.PCM,
        channels=args.channels,
        sample_rate=args.rate,
        bit_depth=args.bit_depth,
    )
    client = SendspinClient(
        identity,
        args.name,
        [Roles.PLAYER],
        pairing_store=store,
        player_support=ClientHelloPlayerSupport(
            supported_formats=[pcm_format],
            buffer_capacity=args.buffer_capacity,
        ),
        state_supported_commands=[PlayerCommand.VOLUME, PlayerCommand.MUTE],
        initial_volume=100,
        initial_muted=False,
        cipher_suite=NoiseCipherSuite(args.suite),
    )
    recorder = EncryptedRecorder(client)
    client.add_stream_start_listener(recorder.on_stream_start)
    client.add_audio_chunk_listener(recorder.on_audio_chunk_with_lead)
    client.add_stream_clear_listener(recorder.on_stream_clear)
    client.add_stream_end_listener(recorder.on_stream_end)

    try:
        await client.connect(args.url)
    except Exception as error:  # noqa: BLE001 - any failure of the handshake ends the run
        LOGGER.error("connecting to %s failed: %s", args.url, error)
        await client.disconnect()
        return 1
    client.add_disconnect_listener(recorder.on_disconnect)
    info = client.server_info
    if info is not None:
        emit("connected", server_id=info.server_id, name=info.name)

    try:
        await asyncio.wait_for(recorder.finished.wait(), timeout=args.seconds)
    except TimeoutError:
        recorder.finish("seconds")

    leads_us = recorder.leads_us()
    await client.disconnect(GoodbyeReason.SHUTDOWN)
    write_recording(args, recorder, leads_us)
    return 0 if recorder.ended_by == "stream_end" else 3


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Record the PCM a Sendspin 1.0 server streams to one player (aiosendspin 10.2.1)."
    )
    parser.add_argument("--url", required=True, help="server URL, e.g. ws://127.0.0.1:8927/sendspin")
    parser.add_argument("--name", default="aiosendspin 10.2.1 recorder", help="client name in client/hello")
    parser.add_argument(
        "--suite",
        default="25519_ChaChaPoly_SHA256",
        choices=[suite.value for suite in NoiseCipherSuite],
        help="Noise cipher suite (default 25519_ChaChaPoly_SHA256)",
    )
    parser.add_argument("--private-key", help="base64url X25519 private key (default: a new one)")
    parser.add_argument(
        "--pairing-psk", help="base64url 32-byte pairing PSK that a server may pair this client with"
    )
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
