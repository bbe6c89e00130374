"""Peers of the network-fault tests (tests/net_faults), run in the test's
namespace B with `ip netns exec`. CPython's `socket` only, no netloom code.

Every mode binds or connects, prints one line `ready PORT` on stdout
(PORT: the port it listens on, or its own local port for a client), then
serves until it is killed (the test kills it by pid). The frame format is
netloom's SeqPacker: len u32 | id u32 | seq u32 | body, little-endian.

  echo-tcp HOST PORT [SHUFFLE_MS]   echo every frame; with SHUFFLE_MS, each
                                    reply waits a random 0..SHUFFLE_MS (so
                                    replies overtake one another)
  echo-udp HOST PORT                echo every datagram to its sender
  hold-client HOST PORT             connect, send one frame (id 1), read its
                                    echo, then only read (a silent client)
  hold-listen HOST PORT             accept and only read (a silent server)
  relay-tcp HOST PORT THOST TPORT DELAY_MS
                                    forward each connection to THOST:TPORT,
                                    every chunk (both ways) DELAY_MS late,
                                    in order
  relay-udp HOST PORT THOST TPORT DELAY_MS JITTER_MS
                                    forward datagrams to THOST:TPORT and the
                                    answers back to the last client, each
                                    DELAY_MS + random 0..JITTER_MS late
                                    (so they are reordered)
"""

import heapq
import random
import socket
import struct
import sys
import threading
import time

HEAD = 12


def ready(port):
    sys.stdout.write("ready %d\n" % port)
    sys.stdout.flush()


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(conn):
    head = read_exact(conn, HEAD)
    if head is None:
        return None
    (length,) = struct.unpack("<I", head[:4])
    body = read_exact(conn, length) if length else b""
    if body is None:
        return None
    return head + body


def listener(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    return s


def serve(s, handle):
    ready(s.getsockname()[1])
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def echo_tcp(host, port, shuffle_ms=0):
    def handle(conn):
        lock = threading.Lock()

        def send(frame):
            with lock:
                try:
                    conn.sendall(frame)
                except OSError:
                    pass

        while True:
            frame = read_frame(conn)
            if frame is None:
                return
            if shuffle_ms:
                delay = random.uniform(0, shuffle_ms) / 1000.0
                threading.Timer(delay, send, args=(frame,)).start()
            else:
                send(frame)

    serve(listener(host, port), handle)


def echo_udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    ready(s.getsockname()[1])
    while True:
        data, peer = s.recvfrom(65535)
        try:
            s.sendto(data, peer)
        except OSError:
            pass  # an nft drop on output says EPERM: a lost datagram


def hold_client(host, port):
    c = socket.create_connection((host, port), timeout=10)
    body = b"hello"
    c.sendall(struct.pack("<III", len(body), 1, 0) + body)
    if read_frame(c) is None:
        sys.exit("hold-client: no echo")
    c.settimeout(None)
    ready(c.getsockname()[1])
    while c.recv(65536):
        pass


def hold_listen(host, port):
    def handle(conn):
        while conn.recv(65536):
            pass

    serve(listener(host, port), handle)


class Delayed:
    """Sends what is put in at its due time, from one thread, due order."""

    def __init__(self, send, stream=True):
        self.send = send
        self.stream = stream
        self.heap = []
        self.n = 0
        self.cv = threading.Condition()
        threading.Thread(target=self.run, daemon=True).start()

    def put(self, due, data):
        with self.cv:
            self.n += 1
            heapq.heappush(self.heap, (due, self.n, data))
            self.cv.notify()

    def run(self):
        while True:
            with self.cv:
                while not self.heap or self.heap[0][0] > time.monotonic():
                    wait = self.heap[0][0] - time.monotonic() if self.heap else None
                    self.cv.wait(wait)
                _, _, data = heapq.heappop(self.heap)
            if data is None:
                return
            try:
                self.send(data)
            except OSError:
                if self.stream:
                    return


def relay_tcp(host, port, thost, tport, delay_ms):
    delay = delay_ms / 1000.0

    def pump(src, dst):
        out = Delayed(dst.sendall)
        while True:
            try:
                chunk = src.recv(65536)
            except OSError:
                chunk = b""
            out.put(time.monotonic() + delay, chunk or None)
            if not chunk:
                return

    def handle(conn):
        up = socket.create_connection((thost, tport), timeout=10)
        up.settimeout(None)
        threading.Thread(target=pump, args=(conn, up), daemon=True).start()
        pump(up, conn)

    serve(listener(host, port), handle)


def relay_udp(host, port, thost, tport, delay_ms, jitter_ms):
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind((host, port))
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.connect((thost, tport))
    client = [None]
    to_back = Delayed(back.send, stream=False)
    to_front = Delayed(lambda data: front.sendto(data, client[0]), stream=False)

    def due():
        return time.monotonic() + (delay_ms + random.uniform(0, jitter_ms)) / 1000.0

    def answers():
        while True:
            try:
                data = back.recv(65535)
            except OSError:
                continue  # ECONNREFUSED from an earlier send: not ours to stop on
            to_front.put(due(), data)

    threading.Thread(target=answers, daemon=True).start()
    ready(front.getsockname()[1])
    while True:
        data, peer = front.recvfrom(65535)
        client[0] = peer
        to_back.put(due(), data)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    host, port = args[0], int(args[1])
    if mode == "echo-tcp":
        echo_tcp(host, port, int(args[2]) if len(args) > 2 else 0)
    elif mode == "echo-udp":
        echo_udp(host, port)
    elif mode == "hold-client":
        hold_client(host, port)
    elif mode == "hold-listen":
        hold_listen(host, port)
    elif mode == "relay-tcp":
        relay_tcp(host, port, args[2], int(args[3]), int(args[4]))
    elif mode == "relay-udp":
        relay_udp(host, port, args[2], int(args[3]), int(args[4]), int(args[5]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
