"""An independent UDP peer for netloom's UDP tests: Python's `socket`
only. Frames are the default packer's (body length u32 LE, id u32 LE,
body), built here with `struct`. Every wait is bounded (socket timeouts).

    udp_peer.py frames HOST PORT       several frames per datagram, a cut
                                       frame, an oversized datagram, replies
    udp_peer.py many HOST PORT N       N peers at once, each its own replies
    udp_peer.py once HOST PORT         one datagram, print our address, then
                                       wait for the server's word on stdin
    udp_peer.py flood HOST PORT N SIZE N echoed datagrams of SIZE bytes at
                                       full speed, reading as it goes
Prints one line per fact checked; exits non-zero on a wrong reply.
"""
import select
import socket
import struct
import sys
import time

TIMEOUT = 10


def frame(msg_id, body):
    return struct.pack("<II", len(body), msg_id) + body


def parse(datagram):
    """Every frame of a datagram as (id, body)."""
    out = []
    while datagram:
        n, msg_id = struct.unpack("<II", datagram[:8])
        out.append((msg_id, datagram[8:8 + n]))
        datagram = datagram[8 + n:]
    return out


def sock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.bind(("127.0.0.1", 0))
    return s


def frames(addr):
    s = sock()
    s.sendto(frame(1, b"one"), addr)
    got = parse(s.recv(65535))
    assert got == [(1, b"one")], got
    print("single ok")
    s.sendto(frame(2, b"a") + frame(3, b"") + frame(4, b"ccc"), addr)
    got = [parse(s.recv(65535)) for _ in range(3)]
    assert got == [[(2, b"a")], [(3, b"")], [(4, b"ccc")]], got
    print("three in one ok, one datagram each back")
    cut = frame(5, b"whole") + frame(6, b"cut here")[:-1]
    s.sendto(cut, addr)
    s.sendto(b"\x01\x02\x03", addr)
    s.sendto(b"x" * 2000, addr)  # over the test's max_datagram
    s.sendto(frame(7, b"after"), addr)
    got = parse(s.recv(65535))
    assert got == [(7, b"after")], "the bad datagrams were answered: %r" % got
    print("bad datagrams dropped, session goes on")
    print("local", s.getsockname()[1])


def many(addr, n):
    """N peers at once. The kernel may drop datagrams when a receive
    buffer overflows (1,000 sent back to back do that), so a peer not
    answered within 200 ms sends again, as a UDP client does."""
    socks = [sock() for _ in range(n)]
    for s in socks:
        s.setblocking(False)
    waiting = {s.fileno(): (i, s) for i, s in enumerate(socks)}
    resent = 0
    deadline = time.monotonic() + TIMEOUT * 2
    while waiting and time.monotonic() < deadline:
        for i, s in waiting.values():
            s.sendto(frame(1, b"%d" % i), addr)
        round_end = time.monotonic() + 0.2
        while waiting and time.monotonic() < round_end:
            socks_left = [s for _, s in waiting.values()]
            r, _, _ = select.select(socks_left[:1000], [], [], 0.05)
            for s in r:
                i, _ = waiting.pop(s.fileno())
                got = parse(s.recv(65535))
                assert got == [(1, b"%d" % i)], (i, got)
        resent += len(waiting)
    assert not waiting, "%d peers never answered" % len(waiting)
    print("many ok", n, "resent", resent)


def once(addr):
    s = sock()
    s.sendto(frame(1, b"hi"), addr)
    print("local", s.getsockname()[1], flush=True)
    sys.stdin.readline()


def flood(addr, n, size):
    s = sock()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    body = b"z" * (size - 8)
    sent = received = 0
    window = 64
    deadline = time.monotonic() + TIMEOUT * 3
    s.setblocking(False)
    while received < n and time.monotonic() < deadline:
        while sent < n and sent - received < window:
            s.sendto(frame(sent % 1000, body), addr)
            sent += 1
        r, _, _ = select.select([s], [], [], 0.2)
        if not r:
            # A datagram lost in the kernel (not the server's doing):
            # let the window move on.
            received += 1
            continue
        while True:
            try:
                d = s.recv(65535)
            except BlockingIOError:
                break
            for msg_id, b in parse(d):
                assert len(b) == len(body), len(b)
            received += 1
    print("flood", sent, received)


def main():
    cmd, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    addr = (host, port)
    if cmd == "frames":
        frames(addr)
    elif cmd == "many":
        many(addr, int(sys.argv[4]))
    elif cmd == "once":
        once(addr)
    elif cmd == "flood":
        flood(addr, int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
