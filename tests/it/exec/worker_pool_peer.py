"""A peer nobody on the team wrote (Python's socket and struct) against
examples/worker_pool: connection A asks for a blocking call (id 2, body
"400": the handler sleeps 400 ms) and, right behind it, an echo (id 1);
connection B, meanwhile, echoes one message after another until A's
call has answered, timing each.

Prints one line: `a_order=<ids A got, in order> b_echoes=<n>
b_max_ms=<B's slowest round trip>`.
The test decides what the model should give."""

import select
import socket
import struct
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])


def frame(msg_id, body):
    return struct.pack("<II", len(body), msg_id) + body


def recv_frame(f):
    head = f.read(8)
    if len(head) != 8:
        raise SystemExit("closed early")
    n, msg_id = struct.unpack("<II", head)
    return msg_id, f.read(n)


a = socket.create_connection((host, port), timeout=10)
b = socket.create_connection((host, port), timeout=10)
a_in, b_in = a.makefile("rb"), b.makefile("rb")
a.sendall(frame(2, b"400") + frame(1, b"after the call"))
# B echoes, one at a time, until A's call has answered: some of B's echoes
# are asked while the call runs.
times = []
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    ready, _, _ = select.select([a], [], [], 0)
    if ready:
        break
    start = time.monotonic()
    b.sendall(frame(1, b"b"))
    assert recv_frame(b_in) == (1, b"b")
    times.append((time.monotonic() - start) * 1000)
a_got = [recv_frame(a_in), recv_frame(a_in)]
assert a_got[0] == (2, b"400"), a_got
assert a_got[1] == (1, b"after the call"), a_got
print(f"a_order={a_got[0][0]},{a_got[1][0]} b_echoes={len(times)} b_max_ms={max(times):.0f}")
