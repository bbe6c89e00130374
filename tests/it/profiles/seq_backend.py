"""A SeqPacker backend nobody on the team's Rust side wrote: asyncio, any
number of connections, each frame (len u32 LE | id u32 LE | seq u32 LE |
body) answered with the same id and seq and the body upper-cased. Prints
"ready PORT", then serves until stdin closes (the test's end) or 60 s."""
import asyncio
import struct
import sys
import threading


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readexactly(12)
            n, i, seq = struct.unpack("<III", head)
            body = await reader.readexactly(n)
            writer.write(struct.pack("<III", n, i, seq) + body.upper())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()

    def watch():
        sys.stdin.read()
        loop.call_soon_threadsafe(stdin_closed.set_result, None)

    threading.Thread(target=watch, daemon=True).start()
    try:
        await asyncio.wait_for(stdin_closed, 60)
    except asyncio.TimeoutError:
        pass


asyncio.run(main())
