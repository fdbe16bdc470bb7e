#!/usr/bin/env python3
"""Pair one aiosendspin 10.2.1 client with a Sendspin 1.0 server by a pairing code.

Run it inside the peers root, in the venv-sendspin venv. The client creates a
fresh identity and connects to --url as a metadata client that offers one
code method. With --static-code CODE it offers the static pairing code CODE
and opens its pairing window before it connects. With --dynamic it offers a
dynamic pairing code in the digits format, shown on a "display" that prints
it.

Every line on stdout is one JSON object with an "event" key: "identity"
(client_id) first; "pairing_code" (code, grouped) each time the client shows
a dynamic code; "paired" (server_id) when the server closed the connection and the client
has a pairing record; "done" (reason). Exit status: 0 when a record was stored, 3 when --seconds
passed without one, 1 when connecting failed, 2 on invalid arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from aiosendspin.client import SendspinClient
from aiosendspin.client.models import PairingSupport
from aiosendspin.models.types import Roles
from aiosendspin.noise import Identity, InMemoryClientPairingStore
from aiosendspin.noise.session import NoiseCipherSuite
from aiosendspin.noise.trust_store import ClientPairingConfig

LOGGER = logging.getLogger("pairing_client")


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def show_code(pairing_code: str | None, *, grouped: str | None) -> None:
    if pairing_code is not None:
        emit("pairing_code", code=pairing_code, grouped=grouped)


async def pair(args: argparse.Namespace) -> int:
    identity = Identity.generate()
    emit("identity", client_id=identity.peer_id)
    store = InMemoryClientPairingStore()
    if args.static_code:
        await store.store_pairing_config(
            ClientPairingConfig(dynamic_pairing_code_enabled=False, static_pairing_code_enabled=True)
        )
        await store.set_static_pairing_code(args.static_code)
        support = PairingSupport(offer_static_pairing_code=True, secret_locations=("device",))
    else:
        await store.store_pairing_config(ClientPairingConfig(dynamic_pairing_code_enabled=True))
        support = PairingSupport(pairing_code_display=show_code, offer_static_pairing_code=False)
    client = SendspinClient(
        identity,
        "aiosendspin 10.2.1 pairing client",
        [Roles.METADATA],
        pairing_store=store,
        pairing_support=support,
        cipher_suite=NoiseCipherSuite(args.suite),
    )
    if args.static_code:
        client.open_pairing_window()
    closed = asyncio.Event()
    client.add_disconnect_listener(closed.set)
    try:
        await client.connect(args.url)
    except Exception as error:  # noqa: BLE001 - any failure of the handshake ends the run
        LOGGER.error("connecting to %s failed: %s", args.url, error)
        await client.disconnect()
        emit("done", reason="connect_failed")
        return 1

    # The server re-handshakes to the new PSK after the record is stored,
    # so the run ends when the server closes, not when the record appears.
    try:
        await asyncio.wait_for(closed.wait(), timeout=args.seconds)
    except TimeoutError:
        pass
    records = await store.list_records()
    await client.disconnect()
    if records:
        emit("paired", server_id=records[0].server_id)
        emit("done", reason="paired")
        return 0
    emit("done", reason="seconds" if not closed.is_set() else "closed")
    return 3


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Pair an aiosendspin 10.2.1 client by a pairing code.")
    parser.add_argument("--url", required=True, help="server URL, e.g. ws://127.0.0.1:8927/sendspin")
    method = parser.add_mutually_exclusive_group(required=True)
    method.add_argument("--static-code", help="offer this 8-digit static pairing code")
    method.add_argument("--dynamic", action="store_true", help="offer a dynamic pairing code in digits")
    parser.add_argument(
        "--suite",
        default="25519_ChaChaPoly_SHA256",
        choices=("25519_ChaChaPoly_SHA256", "25519_AESGCM_SHA256"),
        help="Noise cipher suite",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="give up after this long")
    parser.add_argument("--verbose", action="store_true", help="log aiosendspin at DEBUG to stderr")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args(sys.argv[1:])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    return asyncio.run(pair(args))


if __name__ == "__main__":
    sys.exit(main())
