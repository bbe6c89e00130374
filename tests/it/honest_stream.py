"""Honest clients at full speed, for tests/it/honest.rs.

    honest_stream.py MODE ADDR SIZE BYTES [--clients N] [--window BYTES]
                     [--min-secs S] [--cafile PEM]

MODE is tcp, tls (the server's 8-byte packer: len u32 LE, id u32 LE = 1,
body), ws or wss (binary messages, each one whole WebSocket frame). Each of
N clients sends whole messages with SIZE-byte bodies as fast as it can,
never more than WINDOW bytes of them unanswered, reads every echo and
checks it byte for byte, until BYTES bytes of bodies came back and at least
S seconds passed; then it closes cleanly (close_notify, a close frame).

Prints "ok BYTES SECS" and exits 0, or prints what went wrong (the server
closed, an echo differed, a timeout) and exits 1.
"""

import argparse
import asyncio
import ssl
import struct
import sys
import time

# Distinct bodies, cycled (a reordered or corrupted echo shows).
CYCLE = 61


def bodies(size):
    base = bytes(range(256)) * (size // 256 + 2)
    return [base[i : i + size] for i in range(CYCLE)]


class Window:
    """Bytes sent and not yet echoed, at most `limit`."""

    def __init__(self, limit):
        self.limit = limit
        self.out = 0
        self.cond = asyncio.Condition()

    async def take(self, n):
        async with self.cond:
            await self.cond.wait_for(lambda: self.out + n <= max(self.limit, n))
            self.out += n

    async def give(self, n):
        async with self.cond:
            self.out -= n
            self.cond.notify_all()


def enough(echoed, want, start, min_secs):
    return echoed >= want and time.monotonic() - start >= min_secs


def cyclic(cycle, at, n):
    """Bytes `at .. at + n` of `cycle` repeated forever."""
    at %= len(cycle)
    out = cycle[at : at + n]
    while len(out) < n:
        out += cycle[: n - len(out)]
    return out


async def stream_frames(args, ssl_ctx):
    """tcp / tls: the byte stream of frames, written in 64 KiB pieces cut
    anywhere; the echo stream must be the same bytes."""
    host, port = args.addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(
        host, int(port), ssl=ssl_ctx, server_hostname="localhost" if ssl_ctx else None
    )
    cycle = b"".join(struct.pack("<II", len(b), 1) + b for b in bodies(args.size))
    frame = 8 + args.size
    window = Window(max(args.window, frame))
    start = time.monotonic()
    done = asyncio.Event()
    state = {"sent": 0}

    async def send():
        while True:
            n = 65536
            if done.is_set():
                # The stream ends on a frame boundary: it is whole frames.
                n = -state["sent"] % frame
                if n == 0:
                    return
            await window.take(n)
            if done.is_set() and n == 65536:
                await window.give(n)  # done meanwhile: end the frame instead
                continue
            writer.write(cyclic(cycle, state["sent"], n))
            state["sent"] += n
            await writer.drain()

    send_task = asyncio.ensure_future(send())
    got = 0
    while True:
        data = await reader.read(1 << 18)
        if not data:
            raise RuntimeError(f"the server closed after {got} bytes")
        if data != cyclic(cycle, got, len(data)):
            raise RuntimeError(f"echo differs at byte {got}")
        got += len(data)
        await window.give(len(data))
        if got % frame:
            continue
        if enough(got // frame * args.size, args.bytes, start, args.min_secs):
            done.set()
        if done.is_set() and got == state["sent"]:
            break
    await send_task
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass
    return got // frame * args.size, time.monotonic() - start


async def stream_messages(args, ssl_ctx):
    """ws / wss: whole binary messages; each echo must be the message."""
    import websockets

    scheme = "wss" if ssl_ctx else "ws"
    url = f"{scheme}://{args.addr}/"
    msgs = bodies(args.size)
    window = Window(max(args.window, args.size))
    start = time.monotonic()
    async with websockets.connect(
        url, ssl=ssl_ctx, max_size=None, compression=None, max_queue=None,
        server_hostname="localhost" if ssl_ctx else None,
    ) as ws:
        done = asyncio.Event()
        state = {"sent": 0}

        async def send():
            while True:
                await window.take(args.size)
                if done.is_set():
                    await window.give(args.size)
                    return
                msg = msgs[state["sent"] % CYCLE]
                state["sent"] += 1
                await ws.send(msg)

        send_task = asyncio.ensure_future(send())
        got = 0
        while not (done.is_set() and got == state["sent"]):
            msg = await ws.recv()
            if msg != msgs[got % CYCLE]:
                raise RuntimeError(f"echo {got} differs")
            got += 1
            await window.give(args.size)
            if enough(got * args.size, args.bytes, start, args.min_secs):
                done.set()
        await send_task
    return got * args.size, time.monotonic() - start


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["tcp", "tls", "ws", "wss"])
    p.add_argument("addr")
    p.add_argument("size", type=int)
    p.add_argument("bytes", type=int)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--window", type=int, default=1 << 20)
    p.add_argument("--min-secs", type=float, default=0.0)
    p.add_argument("--cafile")
    args = p.parse_args()
    ctx = None
    if args.mode in ("tls", "wss"):
        ctx = ssl.create_default_context(cafile=args.cafile)
    run = stream_frames if args.mode in ("tcp", "tls") else stream_messages
    start = time.monotonic()
    results = await asyncio.gather(*(run(args, ctx) for _ in range(args.clients)))
    total = sum(r[0] for r in results)
    print(f"ok {total} {time.monotonic() - start:.2f}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # any failure is the test's: say what it was
        print(f"failed: {type(e).__name__}: {e}")
        sys.exit(1)
