#!/usr/bin/env python3
"""A TCP proxy on loopback that adds a fixed delay to every request.

    latency_proxy.py UPSTREAM_PORT DELAY_MS PORT_FILE

Listens on a free 127.0.0.1 port (written to PORT_FILE once listening) and
forwards each connection to 127.0.0.1:UPSTREAM_PORT. Bytes from the client are
held DELAY_MS before they are passed on (in order); replies pass at once. So
every HTTP request costs DELAY_MS more, like a store that far away, while the
server and the client are the real ones. For benchmarks only.
"""
import asyncio
import socket
import sys


async def delayed(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def read():
        while True:
            data = await reader.read(1 << 16)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                return

    task = asyncio.create_task(read())
    try:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    finally:
        task.cancel()


async def plain(reader, writer):
    while True:
        data = await reader.read(1 << 16)
        if not data:
            writer.write_eof()
            return
        writer.write(data)
        await writer.drain()


async def handle(client_r, client_w, upstream, delay):
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        client_w.close()
        return
    for w in (client_w, server_w):
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.gather(delayed(client_r, server_w, delay), plain(server_r, client_w))
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        client_w.close()
        server_w.close()


async def main():
    upstream, delay, port_file = int(sys.argv[1]), int(sys.argv[2]) / 1000, sys.argv[3]
    server = await asyncio.start_server(lambda r, w: handle(r, w, upstream, delay), "127.0.0.1", 0)
    with open(port_file, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
