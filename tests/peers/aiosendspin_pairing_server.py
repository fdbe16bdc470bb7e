#!/usr/bin/env python3
"""Pair the first client that connects with an aiosendspin 10.2.1 server by a static pairing code.

Run it inside the peers root, in the venv-sendspin venv. The server listens
on 127.0.0.1 (--port, 0 for any free port) at /sendspin with a fresh
identity, accepts only encrypted Sendspin 1.0 clients and approves none for
unpaired playback. When a client is added, it starts a static pairing code
attempt on it, entering --static-code as its operator would.

Every line on stdout is one JSON object with an "event" key: "identity"
(server_id), "listening" (url), "client" (client_id), "paired" (client_id,
once the server stored its pairing record) or "pairing_failed" (client_id,
error). Exit status: 0 when a client paired, 3 when --timeout passed first,
4 when the attempt failed, 1 when the port could not be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web
from aiosendspin.models.types import PairMethod
from aiosendspin.noise import Identity, InMemoryServerPairingStore
from aiosendspin.noise.pairing import PairingAttempt
from aiosendspin.server import ClientAddedEvent, SendspinEvent, SendspinServer

from aiosendspin_server import bind_listener, emit

LOGGER = logging.getLogger("aiosendspin_pairing_server")


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    store = InMemoryServerPairingStore()
    identity = Identity.generate()
    emit("identity", server_id=identity.peer_id)
    server = SendspinServer(loop, identity, "aiosendspin 10.2.1 pairing server", pairing_store=store)
    outcome: asyncio.Future[int] = loop.create_future()

    async def code() -> str:
        return args.static_code

    async def pair(client_id: str) -> None:
        attempt = PairingAttempt(method=PairMethod.STATIC_PAIRING_CODE, pairing_code_provider=code)
        try:
            await server.initiate_pairing(client_id, attempt)
        except Exception as error:  # noqa: BLE001 - every failure is reported the same way
            LOGGER.warning("pairing %s failed", client_id, exc_info=True)
            emit("pairing_failed", client_id=client_id, error=f"{type(error).__name__}: {error}")
            if not outcome.done():
                outcome.set_result(4)
            return
        if await store.record_by_client_id(client_id) is not None:
            emit("paired", client_id=client_id)
            if not outcome.done():
                outcome.set_result(0)

    tasks: set[asyncio.Task[None]] = set()

    def on_event(_server: SendspinServer, event: SendspinEvent) -> None:
        if isinstance(event, ClientAddedEvent) and not tasks:
            emit("client", client_id=event.client_id)
            task = loop.create_task(pair(event.client_id))
            tasks.add(task)

    server.add_event_listener(on_event)
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

    try:
        status = await asyncio.wait_for(outcome, timeout=args.timeout)
    except TimeoutError:
        status = 3
    # Let the re-handshake to the new PSK finish before closing.
    await asyncio.sleep(0.5)
    await server.close()
    await runner.cleanup()
    return status


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Pair a client by a static pairing code (aiosendspin 10.2.1).")
    parser.add_argument("--static-code", required=True, help="the client's 8-digit static pairing code")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    parser.add_argument("--verbose", action="store_true", help="log aiosendspin at DEBUG to stderr")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args(sys.argv[1:])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
