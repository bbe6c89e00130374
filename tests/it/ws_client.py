"""WebSocket scenarios for tests/it/ws/python.rs, driven by the `websockets` package
(its sync client; its asyncio client over TLS): a client nobody on the
netloom team wrote.

Usage: client.py SCENARIO URL [CA_FILE]. Prints "ok" on success; exits with
a message otherwise. Every wait is bounded.
"""
import asyncio
import ssl
import struct
import sys
import time

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect
import websockets.asyncio.client

T = 10  # seconds, for every wait


def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)


def open_ws(url, **kw):
    return connect(url, open_timeout=T, close_timeout=T, max_size=None, **kw)


def expect_closed(ws, code, reason=None):
    """Read until the server closes; check its close frame."""
    try:
        while True:
            ws.recv(timeout=T)
    except ConnectionClosed as e:
        check(e.rcvd is not None, f"no close frame received (expected {code}): {e!r}")
        check(e.rcvd.code == code, f"close code {e.rcvd.code}, expected {code} ({e.rcvd.reason!r})")
        if reason is not None:
            check(e.rcvd.reason == reason, f"close reason {e.rcvd.reason!r}, expected {reason!r}")
    except TimeoutError:
        sys.exit(f"FAIL: server did not close (expected {code})")


def send_refused(ws, msg, code):
    """Send what the server refuses, then expect its close. The close may
    come while the send is still going: an iterable goes out as fragments
    and then an empty final frame, and the server closes after the
    fragment that crosses its limit."""
    try:
        ws.send(msg)
    except ConnectionClosed as e:
        check(e.rcvd is not None, f"no close frame received (expected {code}): {e!r}")
        check(e.rcvd.code == code, f"close code {e.rcvd.code}, expected {code} ({e.rcvd.reason!r})")
        return
    expect_closed(ws, code)


def send_raw_text(ws, data, fin=True):
    """A text frame with arbitrary bytes (websockets would refuse bad UTF-8)."""
    with ws.protocol_mutex:
        ws.protocol.send_text(data, fin=fin)
        ws.send_data()


def send_raw_continuation(ws, data, fin):
    with ws.protocol_mutex:
        ws.protocol.send_continuation(data, fin=fin)
        ws.send_data()


def echo(url):
    with open_ws(url) as ws:
        check(ws.recv(timeout=T) == "welcome", "welcome message queued by on_open first")
        for msg in ["hello", "", "żółw ✓ 🐢", "x" * 70000]:
            ws.send(msg)
            got = ws.recv(timeout=T)
            check(got == msg, f"text echo of {len(msg)} chars: got {len(got)}")
        for msg in [b"\x00\x01\xff", b"", bytes(range(256)) * 2048]:
            ws.send(msg)
            got = ws.recv(timeout=T)
            check(got == msg, f"binary echo of {len(msg)} bytes: got {len(got)}")
        ws.send(["frag-", "men", "", "ted ✓"])
        check(ws.recv(timeout=T) == "frag-mented ✓", "fragmented text")
        ws.send([b"ab", b"", b"cd"])
        check(ws.recv(timeout=T) == b"abcd", "fragmented binary")
        pong = ws.ping(b"are you there")
        check(pong.wait(T), "pong for our ping")
        # Pipelined: many messages before reading any reply.
        for i in range(100):
            ws.send(f"m{i}")
        for i in range(100):
            check(ws.recv(timeout=T) == f"m{i}", f"pipelined message {i} in order")
    check(ws.close_code == 1000, f"clean close, got {ws.close_code}")


def query(url):
    with open_ws(url, additional_headers={"X-Token": "abc123"}) as ws:
        ws.send("who")
        got = ws.recv(timeout=T)
        check(got == "/room/7|Jörg & co|1,2|abc123", f"request fields: {got!r}")


def reject(url):
    try:
        with open_ws(url):
            pass
    except InvalidStatus as e:
        check(e.response.status_code == 403, f"status {e.response.status_code}")
    else:
        sys.exit("FAIL: upgrade was not rejected")


def invalid_utf8(url):
    with open_ws(url) as ws:
        send_raw_text(ws, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")
        expect_closed(ws, 1007)
    # Split across fragments: valid prefix, truncated sequence at the end.
    with open_ws(url) as ws:
        send_raw_text(ws, b"ok \xf0\x9f", fin=False)
        send_raw_continuation(ws, b"\x98", fin=True)
        expect_closed(ws, 1007)


def oversize(url):
    # The server allows 4096-byte messages and 2048-byte frames.
    with open_ws(url) as ws:
        check(ws.recv(timeout=T) == "welcome", "welcome")
        ws.send("y" * 2000)
        check(ws.recv(timeout=T) == "y" * 2000, "message under the limits passes")
        send_refused(ws, "x" * 5000, 1009)
    with open_ws(url) as ws:
        send_refused(ws, ["a" * 1500, "b" * 1500, "c" * 1500], 1009)
    with open_ws(url) as ws:
        send_refused(ws, b"z" * 3000, 1009)


def server_close(url):
    with open_ws(url) as ws:
        ws.send("close")
        expect_closed(ws, 1000)
    with open_ws(url) as ws:
        ws.send("close_with")
        expect_closed(ws, 4001, "bye now")


def shutdown(url):
    with open_ws(url) as ws:
        ws.send("ready")
        check(ws.recv(timeout=T) == "ready", "ready echo")
        expect_closed(ws, 1001, "going away")


def packer(url):
    def frame(mid, body):
        return struct.pack("<II", len(body), mid) + body

    with open_ws(url) as ws:
        ws.send(frame(7, b"hello"))
        check(ws.recv(timeout=T) == frame(7, b"hello"), "one packer frame per message")
        # Two frames in one message: two replies, one message each.
        ws.send(frame(7, b"a") + frame(7, b"bc"))
        check(ws.recv(timeout=T) == frame(7, b"a"), "first of two frames")
        check(ws.recv(timeout=T) == frame(7, b"bc"), "second of two frames")
        # One frame split over two messages.
        f = frame(7, b"split" * 100)
        ws.send(f[:5])
        ws.send(f[5:])
        check(ws.recv(timeout=T) == f, "frame split over two messages")
        ws.send("text is not a packer frame")
        expect_closed(ws, 1003)


def heartbeat(url):
    # The server pings after 200 ms of silence and kicks after 600 ms; the
    # client library answers pings, and pongs count as traffic.
    with open_ws(url) as ws:
        check(ws.recv(timeout=T) == "welcome", "welcome")
        time.sleep(1.5)
        ws.send("still here")
        check(ws.recv(timeout=T) == "still here", "not kicked while answering pings")


def wss(url, ca_file):
    """Over TLS with the asyncio client. The sync client reads on a
    background thread while the caller's thread writes, and Python's
    `ssl` sockets are not safe for that: when TLS 1.3 session tickets
    arrive while the upgrade request is written, about 1 connection in 200
    sends a corrupt record or never sends the request (seen here against
    netloom, and reported against other sync clients, e.g.
    python-socketio#1568). asyncio drives the socket from one thread."""
    ctx = ssl.create_default_context(cafile=ca_file)

    async def scenario():
        async with websockets.asyncio.client.connect(
            url, ssl=ctx, server_hostname="localhost",
            open_timeout=T, close_timeout=T, max_size=None,
        ) as ws:
            check(await ws.recv() == "welcome", "welcome over wss")
            for msg in ["secure hello", "z" * 100000]:
                await ws.send(msg)
                check(await ws.recv() == msg, f"wss echo of {len(msg)} chars")
            await ws.send(b"\x01\x02")
            check(await ws.recv() == b"\x01\x02", "wss binary echo")
        check(ws.close_code == 1000, f"clean close, got {ws.close_code}")

    async def bounded():
        try:
            await asyncio.wait_for(scenario(), 6 * T)
        except TimeoutError:
            sys.exit("FAIL: wss scenario timed out")

    asyncio.run(bounded())


SCENARIOS = {
    "echo": echo,
    "query": query,
    "reject": reject,
    "invalid_utf8": invalid_utf8,
    "oversize": oversize,
    "server_close": server_close,
    "shutdown": shutdown,
    "packer": packer,
    "heartbeat": heartbeat,
    "wss": wss,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](*sys.argv[2:])
    print("ok")
