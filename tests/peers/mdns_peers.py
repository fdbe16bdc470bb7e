"""mDNS interop drivers for the Sendspin reference peers.

Two modes, each exiting by itself within --timeout seconds:

  browse-servers  browses _sendspin-server._tcp with the discovery module of
                  the sendspin 9.0.0 package (built on aiosendspin 10.2.1) and
                  prints each server found; exits 0 once a server whose
                  instance name is --expect shows up, 3 on timeout.
  serve           starts an aiosendspin 10.2.1 SendspinServer with its own
                  mDNS advertisement of _sendspin-server._tcp on --host,
                  prints "listening", and stops after --timeout seconds
                  (exit 0).

Both print one JSON object per line on stdout. Run them inside a network
namespace whose loopback has multicast enabled and a 224.0.0.0/4 route.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def browse_servers(args: argparse.Namespace) -> int:
    from sendspin.discovery import ServiceDiscovery

    discovery = ServiceDiscovery(interfaces=[args.host])
    await discovery.start()
    seen: set[str] = set()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.timeout
        while loop.time() < deadline:
            for server in discovery.get_servers():
                if server.name in seen:
                    continue
                seen.add(server.name)
                emit(event="server", name=server.name, url=server.url, host=server.host, port=server.port)
                if server.name == args.expect:
                    return 0
            await asyncio.sleep(0.1)
        emit(event="timeout", seen=sorted(seen))
        return 3
    finally:
        await discovery.stop()


async def serve(args: argparse.Namespace) -> int:
    from aiosendspin.noise import Identity, InMemoryServerPairingStore
    from aiosendspin.server import SendspinServer

    loop = asyncio.get_running_loop()
    server = SendspinServer(
        loop,
        Identity.generate(),
        args.name,
        pairing_store=InMemoryServerPairingStore(),
        allow_unencrypted=True,
    )
    await server.start_server(
        port=args.port,
        host=args.host,
        advertise_addresses=[args.host],
        discover_clients=False,
    )
    emit(event="listening", id=server.id, name=args.name, port=args.port)
    try:
        await asyncio.sleep(args.timeout)
    finally:
        await server.close()
    emit(event="finished")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["browse-servers", "serve"])
    parser.add_argument("--host", default="127.0.0.1", help="address of the interface to use")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before exiting")
    parser.add_argument("--expect", help="browse-servers: instance name to wait for")
    parser.add_argument("--name", default="aiosendspin mdns peer", help="serve: friendly server name")
    parser.add_argument("--port", type=int, default=8927, help="serve: TCP port")
    args = parser.parse_args()
    if args.mode == "browse-servers":
        if not args.expect:
            parser.error("browse-servers needs --expect INSTANCE")
        return asyncio.run(browse_servers(args))
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
