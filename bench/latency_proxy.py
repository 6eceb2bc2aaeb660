#!/usr/bin/env python3
"""TCP proxy on 127.0.0.1 that delays each direction by RTT/2.

  latency_proxy.py --listen-port P --target-port Q --rtt-ms 20 [--port-file F]

Every chunk read from one side is written to the other side RTT/2 after it
was read, in order; reading goes on meanwhile, so throughput is not capped
by the delay (up to --max-buffer bytes in flight per direction, which then
backpressure the sender like a full TCP window would). EOF is forwarded
after the same delay. Standard library only; loopback only.
With --listen-port 0 the kernel picks the port; it is written to
--port-file once the proxy listens.
"""

import argparse
import asyncio
import os
import signal
import socket
import sys

CHUNK = 256 * 1024


async def pump(reader, writer, delay, max_buffer, stats, key):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    room = asyncio.Condition()
    buffered = 0

    async def read_side():
        nonlocal buffered
        try:
            while True:
                data = await reader.read(CHUNK)
                async with room:
                    await room.wait_for(lambda: buffered < max_buffer)
                    buffered += len(data)
                await queue.put((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time(), None))

    async def write_side():
        nonlocal buffered
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    writer.transport.abort()
                    return
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                stats[key] += len(data)
                async with room:
                    buffered -= len(data)
                    room.notify_all()
        except (ConnectionError, OSError):
            writer.transport.abort()

    r = asyncio.ensure_future(read_side())
    try:
        await write_side()
    finally:
        if not r.done():
            r.cancel()


async def handle(client_r, client_w, args, stats):
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", args.target_port)
    except OSError:
        client_w.transport.abort()
        return
    stats["conns"] += 1
    delay = args.rtt_ms / 2000.0
    try:
        await asyncio.gather(
            pump(client_r, server_w, delay, args.max_buffer, stats, "up"),
            pump(server_r, client_w, delay, args.max_buffer, stats, "down"))
    finally:
        for w in (client_w, server_w):
            try:
                w.close()
            except Exception:
                pass


async def main_async(args):
    stats = {"conns": 0, "up": 0, "down": 0}
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args, stats), "127.0.0.1", args.listen_port,
        reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    sys.stderr.write("latency_proxy: %d connections, %d bytes up, %d bytes down\n"
                     % (stats["conns"], stats["up"], stats["down"]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen-port", type=int, default=0)
    p.add_argument("--target-port", type=int, required=True)
    p.add_argument("--rtt-ms", type=float, default=20.0)
    p.add_argument("--max-buffer", type=int, default=32 * 1024 * 1024)
    p.add_argument("--port-file")
    args = p.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
