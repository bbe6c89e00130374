"""A hotpot client in Python's `websockets` (a peer nobody on the team
wrote) against netloom's JSON envelope routes.

  envelope_peer.py URL echo       send hotpot's Echo, check the answer;
                                  a Ping of the client's gets a Pong
  envelope_peer.py URL bad        garbage, then an unknown type, then Echo
  envelope_peer.py URL welcome    the server's first message: its Welcome
  envelope_peer.py URL keepalive  answer two Pings with Pongs, then fall
                                  silent until closed; print the timings

Prints `ok ...` on success; exits non-zero with the reason otherwise."""

import json
import sys
import time

from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosed

url, mode = sys.argv[1], sys.argv[2]
ECHO = {"type": "Echo", "data": {"Message": "你好，火锅！"}}


def echo(ws):
    ws.send(json.dumps(ECHO, ensure_ascii=False))
    got = json.loads(ws.recv(timeout=10))
    assert got == ECHO, got


with connect(url, open_timeout=10) as ws:
    if mode == "echo":
        echo(ws)
        ws.send(json.dumps({"type": "Ping", "data": {}}))
        got = json.loads(ws.recv(timeout=10))
        assert got == {"type": "Pong", "data": {}}, got
        print("ok echo")
    elif mode == "bad":
        ws.send("this is not json")
        first = ws.recv(timeout=10)
        ws.send(json.dumps({"type": "Nobody", "data": {}}))
        second = ws.recv(timeout=10)
        echo(ws)
        print("ok bad", json.dumps([first, second], ensure_ascii=False))
    elif mode == "welcome":
        got = json.loads(ws.recv(timeout=10))
        assert got == {"type": "Welcome", "data": {"n": 1}}, got
        print("ok welcome")
    elif mode == "keepalive":
        start = time.monotonic()
        pings = []
        for _ in range(2):
            msg = json.loads(ws.recv(timeout=10))
            assert msg == {"type": "Ping", "data": {}}, msg
            pings.append(time.monotonic() - start)
            ws.send(json.dumps({"type": "Pong", "data": {}}))
        # Silent now: a third Ping comes, then the close.
        third = json.loads(ws.recv(timeout=10))
        assert third["type"] == "Ping", third
        try:
            while True:
                ws.recv(timeout=10)
        except ConnectionClosed:
            closed = time.monotonic() - start
        print("ok keepalive", " ".join(f"{t:.2f}" for t in pings), f"{closed:.2f}")
    else:
        raise SystemExit("unknown mode " + mode)
