"""What the Python TLS peers of tests/it share (tls/peers.rs, tls_close.rs,
ws/closes.rs): a client context pinned to one TLS version, and a client
over memory BIOs, which can put several records (data and close_notify)
into one write and read what comes before the server's close_notify.
The scripts import it from tests/it (`tls_support::run_python` puts it
on the path)."""

import socket
import ssl
import sys


def context(cafile, version):
    """A client context trusting `cafile`, speaking only TLS `version`
    ("1.2" or "1.3")."""
    v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    ctx.minimum_version = v
    ctx.maximum_version = v
    return ctx


class Bio:
    """A TLS client over memory BIOs on a socket to 127.0.0.1:`port`,
    handshaken: `obj` reads and writes plaintext, `flush` sends what it
    queued (in one write), `pump` feeds it what the server sent."""

    def __init__(self, port, ctx):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.pump()
        self.flush()

    def flush(self):
        self.sock.sendall(self.out.read())

    def pump(self):
        data = self.sock.recv(65536)
        if not data:
            sys.exit("EOF")
        self.inc.write(data)

    def read(self):
        """Plaintext the server sent, at least some."""
        while True:
            try:
                return self.obj.read(65536)
            except ssl.SSLWantReadError:
                self.pump()

    def write_and_close_notify(self, data):
        """`data` and our close_notify, in one write."""
        self.obj.write(data)
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self.flush()

    def until_close_notify(self):
        """Everything the server sends before its close_notify (exits if
        the stream ends without one)."""
        got = b""
        while True:
            data = self.sock.recv(65536)
            if data:
                self.inc.write(data)
            else:
                self.inc.write_eof()
            try:
                while True:
                    got += self.obj.read(65536)
            except ssl.SSLWantReadError:
                if not data:
                    sys.exit("EOF without close_notify")
                continue
            except ssl.SSLZeroReturnError:
                return got

    def close(self):
        self.obj.unwrap()
        self.sock.close()
