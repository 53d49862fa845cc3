"""A small TCP forwarder: ``python -m tests.cluster.forward LISTEN=BACKEND[,BACKEND...] ...``.

Two uses in the cluster test: the machine's PostgreSQL and Redis (listening on 127.0.0.1 only) reached
from the pod namespaces through the bridge address, and a ClusterIP Service's virtual IP, where each new
connection goes to one backend picked at random, as kube-proxy's iptables mode does (so one HTTP/2
connection stays on one pod: the reason gRPC clients need a headless Service).
"""

from __future__ import annotations

import asyncio
import random
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def _serve(listen: str, backends: list[str]) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        order = random.sample(backends, len(backends))
        for backend in order:  # a backend that refuses (a pod restarting) is skipped, like a failed endpoint
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*_split(backend)), 3)
                break
            except (OSError, asyncio.TimeoutError):
                continue
        else:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    host, port = _split(listen)
    return await asyncio.start_server(handle, host, port, reuse_address=True)


async def main(rules: list[str]) -> None:
    servers = []
    for rule in rules:
        listen, _, backends = rule.partition("=")
        servers.append(await _serve(listen, [b for b in backends.split(",") if b]))
    print("forwarding " + " ".join(rules), flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
