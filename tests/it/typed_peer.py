"""A peer nobody on the team wrote (Python's socket, ssl, json and struct)
for netloom's typed JSON routes: it sends `{"x": 1, "y": 2, "name": "ann"}`
as message 10 with the default packer (body length u32 LE, id u32 LE,
body), over TCP or TLS, and prints the reply's id and the decoded JSON on
one line."""

import json
import socket
import ssl
import struct
import sys

host, port = sys.argv[1], int(sys.argv[2])
cafile = sys.argv[3] if len(sys.argv) > 3 else None

sock = socket.create_connection((host, port), timeout=10)
if cafile:
    ctx = ssl.create_default_context(cafile=cafile)
    sock = ctx.wrap_socket(sock, server_hostname="localhost")
body = json.dumps({"x": 1, "y": 2, "name": "ann"}).encode()
sock.sendall(struct.pack("<II", len(body), 10) + body)
f = sock.makefile("rb")
n, msg_id = struct.unpack("<II", f.read(8))
reply = json.loads(f.read(n))
print(msg_id, json.dumps(reply, sort_keys=True))
