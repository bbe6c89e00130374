#!/usr/bin/env python3
"""Write the seed corpus (fuzz/corpus/TARGET/seed-*): valid frames for each
target, with the settings bytes each target reads first. Rerun it after a
change to a target's input layout: python3 fuzz/seeds.py"""
import os, ssl, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def length(id, body): return struct.pack("<II", len(body), id) + body
def seq(id, s, body): return struct.pack("<III", len(body), id, s) + body
def tlv(s, kind, data): return struct.pack("<III", s, kind, len(data)) + data + b"\r\n"

def masked(first, payload, mask=b"\x01\x02\x03\x04"):
    n = len(payload)
    head = bytes([first])
    if n < 126: head += bytes([0x80 | n])
    elif n < 65536: head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else: head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

def unmasked(first, payload):
    n = len(payload)
    head = bytes([first])
    if n < 126: head += bytes([n])
    else: head += bytes([126]) + struct.pack(">H", n)
    return head + payload

def cuts(*steps): return bytes([len(steps)]) + bytes(steps)

def write(target, name, data):
    d = os.path.join(ROOT, target); os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f: f.write(data)

lf = length(1, b"hello") + length(2, b"") + length(0xffffffff, b"x" * 40)
sf = seq(7, 42, b"hi") + seq(1, 0, b"") + seq(3, 0xffffffff, b"abc" * 10)
tf = tlv(7, 1, b"hi") + tlv(0, 2, b"") + tlv(9, 3, b"\r\n" * 10)
write("packer_length", "three", b"\x00" + lf)
write("packer_length", "partial", b"\x00" + lf[:-3])
write("packer_length", "too-long", b"\x01" + length(1, b"y" * 65))
write("packer_seq", "three", b"\x00" + sf)
write("packer_seq", "partial", b"\x01" + sf[:-3])
write("packer_tlv", "three", b"\x00" + tf)
write("packer_tlv", "bad-trailer", b"\x00" + tlv(1, 1, b"ab")[:-2] + b"\r!")

# frame_reader: packer choice (0 default .. 6 lines), read size, plain, cuts.
for choice, frames in ((0, lf), (2, sf), (4, tf), (6, b"one\ntwo\n\nthree\n")):
    write("frame_reader", f"p{choice}-plain", bytes([choice, 5, 0]) + cuts(3, 1, 7) + frames)
    write("frame_reader", f"p{choice}-layer", bytes([choice, 0, 1]) + cuts(9, 2) + frames)
write("udp_datagram", "length", b"\x00" + lf)
write("udp_datagram", "seq", b"\x02" + sf)
write("udp_datagram", "tlv", b"\x04" + tf)
write("udp_datagram", "cut", b"\x00" + lf[:-1])

frames = (masked(0x81, b"text") + masked(0x01, b"frag") + masked(0x80, b"ment")
          + masked(0x89, b"ping") + masked(0x82, bytes(range(200))) + masked(0x88, b"\x03\xe8bye"))
write("ws_server", "messages", b"\x00" + cuts(30, 3) + frames)
write("ws_server", "packer", b"\x01" + cuts(5) + masked(0x82, length(1, b"hi") + length(2, b"yo")))
write("ws_server", "own-request", b"\x04" + cuts(40) +
      b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
      + masked(0x81, b"x"))
sframes = (unmasked(0x81, b"text") + unmasked(0x02, b"frag") + unmasked(0x80, b"ment")
           + unmasked(0x89, b"ping") + unmasked(0x82, bytes(range(200))) + unmasked(0x88, b"\x03\xe8"))
write("ws_client", "messages", b"\x00" + cuts(4, 3) + sframes)
write("ws_client", "packer", b"\x01" + cuts(2) + unmasked(0x82, length(1, b"hi")))
write("ws_client", "own-answer", b"\x02" + cuts(20) +
      b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")

# TLS: real ClientHellos (TLS 1.3 and 1.2 only), whole and cut.
for name, maxv in (("tls13", ssl.TLSVersion.TLSv1_3), ("tls12", ssl.TLSVersion.TLSv1_2)):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = maxv
    ctx.set_alpn_protocols(["netloom/1"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try: s.do_handshake()
    except ssl.SSLWantReadError: pass
    hello = out.read()
    write("tls_server", name, cuts() + hello)
    write("tls_server", name + "-cut", cuts(3, 2, 100) + hello)
