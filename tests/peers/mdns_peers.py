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
  flap            with python-zeroconf (the version aiosendspin 10.2.1
                  installs), registers and withdraws a --service-type record
                  (default _sendspin._tcp) with TXT path --path for --instance at --host:--port --times times, --gap
                  seconds apart, then --slow times --slow-gap seconds
                  apart, leaves it registered, prints "flapped",
                  holds it for --timeout seconds and withdraws it (exit 0).

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


async def flap(args: argparse.Namespace) -> int:
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    service_type = args.service_type
    zeroconf = AsyncZeroconf(interfaces=[args.host], ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(
        service_type,
        f"{args.instance}.{service_type}",
        server=f"{args.instance}.local.",
        parsed_addresses=[args.host],
        port=args.port,
        properties={"path": args.path, "name": args.instance},
    )
    # Cooperating responders skip the name probe, so a registration takes
    # no 750 ms of probing; the announcements continue in the background.
    # Browsers keep a withdrawn record for one second (RFC 6762, section
    # 10.1), so only withdrawals longer than that reach them as removals.
    announcements = []
    for gap in [args.gap] * args.times + [args.slow_gap] * args.slow:
        announcements.append(await zeroconf.async_register_service(info, cooperating_responders=True))
        await asyncio.sleep(gap)
        announcements.append(await zeroconf.async_unregister_service(info))
        await asyncio.sleep(gap)
    announcements.append(await zeroconf.async_register_service(info, cooperating_responders=True))
    await asyncio.gather(*announcements)
    emit(event="flapped", times=args.times)
    try:
        await asyncio.sleep(args.timeout)
    finally:
        await zeroconf.async_unregister_service(info)
        await zeroconf.async_close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["browse-servers", "serve", "flap"])
    parser.add_argument("--host", default="127.0.0.1", help="address of the interface to use")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before exiting")
    parser.add_argument("--expect", help="browse-servers: instance name to wait for")
    parser.add_argument("--name", default="aiosendspin mdns peer", help="serve: friendly server name")
    parser.add_argument("--port", type=int, default=8927, help="serve and flap: TCP port")
    parser.add_argument("--instance", default="flapping-player", help="flap: instance name")
    parser.add_argument("--times", type=int, default=100, help="flap: withdrawals before the last registration")
    parser.add_argument("--gap", type=float, default=0.005, help="flap: seconds between changes")
    parser.add_argument("--service-type", default="_sendspin._tcp.local.", help="flap: mDNS service type")
    parser.add_argument("--path", default="/sendspin", help="flap: TXT path")
    parser.add_argument("--slow", type=int, default=0, help="flap: slow withdrawals after the fast ones")
    parser.add_argument("--slow-gap", type=float, default=1.5, help="flap: seconds between slow changes")
    args = parser.parse_args()
    if args.mode == "browse-servers":
        if not args.expect:
            parser.error("browse-servers needs --expect INSTANCE")
        return asyncio.run(browse_servers(args))
    if args.mode == "flap":
        return asyncio.run(flap(args))
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
