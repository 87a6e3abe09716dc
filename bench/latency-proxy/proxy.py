"""A TCP proxy that adds a fixed delay to every byte in each direction, like a network path with
a longer round trip: what a DynamoDB endpoint a few milliseconds away looks like from a pod,
when the server itself sits on loopback.

Usage: python3 bench/latency-proxy/proxy.py --listen 127.0.0.1:8001 --upstream 127.0.0.1:4567
       [--rtt-ms 3]

Each direction delays by half the round trip. Delays overlap (bytes are stamped on arrival and
forwarded when due), so the proxy adds latency without limiting throughput. Standard library
only.
"""

import argparse
import asyncio
import time


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, chunk = await queue.get()
            if chunk is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(forward())
    try:
        while True:
            chunk = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay, chunk or None))
            if not chunk:
                break
        await sender
    except (ConnectionError, asyncio.CancelledError):
        sender.cancel()
    finally:
        try:
            writer.close()
        except ConnectionError:
            pass


async def serve(listen_host: str, listen_port: int, up_host: str, up_port: int, rtt: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(up_host, up_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            pipe(client_r, server_w, rtt / 2),
            pipe(server_r, client_w, rtt / 2),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, listen_host, listen_port)
    print(
        f"latency-proxy: {listen_host}:{listen_port} -> {up_host}:{up_port}, +{rtt * 1000:g} ms RTT",
        flush=True,
    )
    async with server:
        await server.serve_forever()


def host_port(value: str) -> tuple:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, type=host_port)
    parser.add_argument("--upstream", required=True, type=host_port)
    parser.add_argument("--rtt-ms", type=float, default=3.0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(*args.listen, *args.upstream, args.rtt_ms / 1000))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
