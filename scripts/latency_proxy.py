"""A TCP proxy on loopback that delays every byte from client to server by a fixed
time: an object store's request latency in front of an emulator, without a cap on
throughput (netem is not available everywhere). Used by scripts/s3_latency.sh.

    python3 scripts/latency_proxy.py LISTEN_PORT TARGET_PORT DELAY_SECONDS

With LATENCY_LOG=FILE it also writes, for each request, the time it arrived (seconds,
monotonic) and its request line: what waited on what in a run.
"""
import asyncio
import os
import sys
import time

LISTEN, TARGET, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
LOG = open(os.environ["LATENCY_LOG"], "a", buffering=1) if os.environ.get("LATENCY_LOG") else None
METHODS = (b"GET ", b"PUT ", b"HEAD ", b"POST ", b"DELETE ")


async def pump(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds after it arrived."""
    queue = asyncio.Queue()

    async def read():
        while True:
            data = await reader.read(1 << 16)
            if LOG and delay and data.startswith(METHODS):
                line = data.split(b"\r\n", 1)[0].decode(errors="replace")
                LOG.write(f"{time.monotonic():.4f} {line}\n")
            await queue.put((time.monotonic(), data))
            if not data:
                return

    async def write():
        while True:
            arrived, data = await queue.get()
            wait = arrived + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(read(), write(), return_exceptions=True)


async def handle(client_reader, client_writer):
    server_reader, server_writer = await asyncio.open_connection("127.0.0.1", TARGET)
    await asyncio.gather(
        pump(client_reader, server_writer, DELAY),
        pump(server_reader, client_writer, 0.0),
        return_exceptions=True,
    )


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    async with server:
        await server.serve_forever()


asyncio.run(main())
