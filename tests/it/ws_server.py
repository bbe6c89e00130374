"""WebSocket servers for tests/it/ws_dial.rs: netloom's WebSocket client
(`Dial::ws`) against servers nobody on the netloom team wrote: Python's
`websockets` (asyncio server), and a raw `socket` server that checks the
client's masking byte by byte.

Usage: ws_server.py SCENARIO [CERT KEY]. Prints the port it listens on
(127.0.0.1), then serves; exits by itself after LIFETIME seconds, or when
its scenario is done. Scenarios:

  echo     echo every message as it came (text as text, binary as
           binary); the answer carries `X-Seen-Authorization` (the request's
           Authorization header) and `X-Seen-Path` (path and query); offers
           subprotocol `feed.v2`; a text message `close CODE` is answered by
           a close with that code; `big N` by a binary message of N bytes;
           `flood N SIZE` by N binary messages of SIZE bytes.
  reject   answers every upgrade with 403.
  masks    a raw socket server: completes one upgrade, reads 50 frames,
           checks each is masked with a key unlike the others, and that
           its payload unmasks to what was sent; answers "masks ok" or
           "FAIL ..." in a text frame.
  unmasked a raw socket server that answers the upgrade, then sends a masked
           frame (a server must not): the client must fail the connection.
  stall    a raw socket server that answers the upgrade, sends a frame
           header declaring 100000 bytes and 1000 of them, then stalls.
  silent   a raw socket server that answers the upgrade, then neither reads
           nor writes (pings go unanswered) until the client goes.
"""
import asyncio
import base64
import hashlib
import socket
import ssl
import struct
import sys

LIFETIME = 60  # seconds
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def say_port(port):
    print(port, flush=True)


async def serve_websockets(scenario, tls):
    from websockets.asyncio.server import serve
    from websockets.datastructures import Headers

    async def handler(ws):
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("close "):
                await ws.close(int(msg.split()[1]), "asked")
                return
            if isinstance(msg, str) and msg.startswith("big "):
                await ws.send(b"b" * int(msg.split()[1]))
                continue
            if isinstance(msg, str) and msg.startswith("flood "):
                _, n, size = msg.split()
                for i in range(int(n)):
                    await ws.send(bytes([i % 256]) * int(size))
                continue
            await ws.send(msg)

    def process_request(connection, request):
        if scenario == "reject":
            return connection.respond(403, "not you\n")
        connection.seen = (request.headers.get("Authorization", ""), request.path)
        return None

    def process_response(connection, request, response):
        auth, path = getattr(connection, "seen", ("", ""))
        response.headers["X-Seen-Authorization"] = auth
        response.headers["X-Seen-Path"] = path
        return response

    async with serve(
        handler,
        "127.0.0.1",
        0,
        ssl=tls,
        # Chose feed.v2 when offered; no subprotocol otherwise (websockets
        # refuses a client offering none when given a list).
        select_subprotocol=lambda conn, offered: "feed.v2" if "feed.v2" in offered else None,
        process_request=process_request,
        process_response=process_response,
        max_size=None,
    ) as server:
        say_port(server.sockets[0].getsockname()[1])
        await asyncio.sleep(LIFETIME)


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed")
        buf += chunk
    return buf


def handshake(conn):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError("peer closed in the request")
        head += chunk
    key = None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def read_frame(conn):
    b0, b1 = recv_exact(conn, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(conn, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(conn, 8))[0]
    masked = bool(b1 & 0x80)
    key = recv_exact(conn, 4) if masked else None
    payload = recv_exact(conn, n)
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, masked, key, payload


def text_frame(text):
    data = text.encode()
    return bytes([0x81, len(data)]) + data


def serve_masks():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(LIFETIME)
    say_port(srv.getsockname()[1])
    conn, _ = srv.accept()
    conn.settimeout(LIFETIME)
    handshake(conn)
    keys = set()
    verdict = "masks ok"
    for i in range(50):
        op, masked, key, payload = read_frame(conn)
        if not masked:
            verdict = f"FAIL frame {i} unmasked"
            break
        if key in keys:
            verdict = f"FAIL frame {i} reuses mask key {key.hex()}"
            break
        keys.add(key)
        want = f"frame {i}".encode()
        if payload != want:
            verdict = f"FAIL frame {i} unmasks to {payload!r}"
            break
    conn.sendall(text_frame(verdict))
    # Wait for the client's close (or its end), bounded.
    try:
        while read_frame(conn)[0] != 8:
            pass
    except (EOFError, OSError):
        pass
    conn.close()


def serve_unmasked():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(LIFETIME)
    say_port(srv.getsockname()[1])
    conn, _ = srv.accept()
    conn.settimeout(LIFETIME)
    handshake(conn)
    # A masked text frame "hi" from the server: forbidden (RFC 6455 5.1).
    key = b"\x01\x02\x03\x04"
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(b"hi"))
    conn.sendall(bytes([0x81, 0x80 | 2]) + key + payload)
    try:
        op, _, _, payload = read_frame(conn)
        code = struct.unpack("!H", payload[:2])[0] if op == 8 and len(payload) >= 2 else None
        print(f"client closed with {code}", flush=True)
    except (EOFError, OSError) as e:
        print(f"client went away: {e}", flush=True)
    conn.close()


def serve_silent(stall=False):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(LIFETIME)
    say_port(srv.getsockname()[1])
    conn, _ = srv.accept()
    conn.settimeout(LIFETIME)
    handshake(conn)
    if stall:
        conn.sendall(bytes([0x82, 127]) + struct.pack("!Q", 100000) + b"s" * 1000)
    # Read nothing: wait (bounded) for the client to go away.
    try:
        conn.recv(1, socket.MSG_PEEK)
        while conn.recv(65536):
            pass
    except OSError:
        pass
    print("client went away", flush=True)
    conn.close()


def main():
    scenario = sys.argv[1]
    if scenario in ("silent", "stall"):
        serve_silent(stall=scenario == "stall")
    elif scenario == "masks":
        serve_masks()
    elif scenario == "unmasked":
        serve_unmasked()
    else:
        tls = None
        if len(sys.argv) > 3:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(sys.argv[2], sys.argv[3])
        asyncio.run(serve_websockets(scenario, tls))


if __name__ == "__main__":
    main()
