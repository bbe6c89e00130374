"""Members of a room in Python's `socket` (a peer nobody on the team
wrote) against netloom's rooms, in the rooms tests' protocol (see
tests/it/rooms.rs): frames are `len u32 LE | id u32 LE | body`.

  rooms_peer.py HOST PORT N

Opens N connections, joins each to room `py`, and checks: a publish_except
from member 0 reaches every other member once and not member 0 (whose
next frame is a later publish from member 1); a member that left gets
nothing more; the counts. Prints `ok` on success; exits non-zero with the
reason otherwise."""

import socket
import struct
import sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def send(s, mid, body):
    s.sendall(struct.pack("<II", len(body), mid) + body)


def recv_exact(s, k):
    out = b""
    while len(out) < k:
        chunk = s.recv(k - len(out))
        if not chunk:
            raise SystemExit("server closed the connection")
        out += chunk
    return out


def recv(s):
    length, mid = struct.unpack("<II", recv_exact(s, 8))
    return mid, recv_exact(s, length)


def expect(s, mid, body, what):
    got = recv(s)
    if got != (mid, body):
        raise SystemExit(f"{what}: got {got!r}, wanted {(mid, body)!r}")


socks = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    socks.append(s)
for i, s in enumerate(socks):
    send(s, 1, b"py")
    expect(s, 1, b"ok", f"join {i}")

send(socks[0], 4, b"py")
expect(socks[0], 4, str(n).encode(), "count")

send(socks[0], 3, b"py\nfirst")
for i, s in enumerate(socks[1:], 1):
    expect(s, 3, b"py\nfirst", f"member {i}")
send(socks[1], 3, b"py\nsecond")
expect(socks[0], 3, b"py\nsecond", "the sender skipped its own")
for i, s in enumerate(socks[2:], 2):
    expect(s, 3, b"py\nsecond", f"member {i}, second")

send(socks[n - 1], 2, b"py")
expect(socks[n - 1], 2, b"ok", "leave")
send(socks[0], 5, b"py\nthird")
for i, s in enumerate(socks[: n - 1]):
    expect(s, 3, b"py\nthird", f"member {i}, third")
send(socks[n - 1], 4, b"py")
expect(socks[n - 1], 4, str(n - 1).encode(), "count after leave: the leaver got nothing")
for s in socks:
    s.close()
print("ok")
