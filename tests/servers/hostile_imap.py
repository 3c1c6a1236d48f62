#!/usr/bin/env python3
"""A hostile IMAP server for the end-to-end tests: each mode is one way a server fails an APPEND
on purpose, after the session up to it went as a fair IMAP4rev1 server would have it. Python
standard library only.

| mode | what it does |
|---|---|
| append-close | reads the whole APPEND literal (its N bytes and the CRLF after them), stores it, then closes the connection without answering |
| append-hang | reads and stores the whole literal, never answers; reads (and logs) what the client sends until it closes |
| append-reset | answers APPEND with "+ Ready", reads 64 KiB of the literal, then resets the connection (RST, not FIN) |
| well-behaved | answers APPEND with "OK [APPENDUID 1 1] APPEND completed": the session without a fault |

Up to APPEND every mode is the same: a greeting; in clear, CAPABILITY offers only STARTTLS
(and LOGINDISABLED), as the IMAP plugin requires STARTTLS on every port but 993 and the
server's port is a free one; STARTTLS ("OK Begin TLS", then the handshake with --cert and
--key); over TLS, CAPABILITY offers AUTH=PLAIN, SPECIAL-USE and UIDPLUS; any AUTHENTICATE PLAIN
or LOGIN is accepted; LIST names INBOX and "Sent", marked \\Sent; EXAMINE says 0 EXISTS;
CREATE, NOOP and LOGOUT are answered OK. APPEND takes synchronizing literals only (`{N}`), as
LITERAL+ is not offered.

It listens on 127.0.0.1 only, on a free port it prints as "READY <port>". It writes into --dir:
`commands.log` (one JSON line per command line heard: conn, tls, line; AUTHENTICATE data as
sent, literals not), `append-N.bin` (each APPEND literal read whole, in order), `closed.log`
(the server closed without an answer, or the client closed a connection the server stopped
answering), `reset.log` (how much of the literal was read before the reset) and `errors.log`.
"""

import argparse
import json
import os
import re
import socket
import ssl
import sys
import threading

CHUNK = 64 * 1024
MODES = ["append-close", "append-hang", "append-reset", "well-behaved"]
LITERAL = re.compile(rb"\{(\d+)\}$")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    server = Server(args)
    print(f"READY {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        server.conns += 1
        threading.Thread(target=server.serve, args=(conn, server.conns), daemon=True).start()


class Server:
    def __init__(self, args):
        self.args = args
        self.conns = 0
        self.lock = threading.Lock()
        self.appends = 0

    def log(self, name, record):
        with self.lock, open(os.path.join(self.args.dir, name), "a") as f:
            f.write(json.dumps(record) + "\n")

    def serve(self, sock, conn):
        session = Session(self, sock, conn)
        try:
            session.run()
        except (OSError, ssl.SSLError) as e:
            self.log("errors.log", {"conn": conn, "error": repr(e)})
        finally:
            try:
                session.sock.close()
            except OSError:
                pass


class Session:
    def __init__(self, server, sock, conn):
        self.server = server
        self.sock = sock
        self.conn = conn
        self.tls = False
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def recv(self):
        """The bytes buffered, else the next ones from the socket (b"" once the client closed)."""
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        return self.sock.recv(CHUNK)

    def raw_line(self):
        """The next line without its CRLF, as bytes; None once the client closed."""
        while b"\n" not in self.buf:
            data = self.sock.recv(CHUNK)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def line(self):
        line = self.raw_line()
        if line is None:
            return None
        text = line.decode("utf-8", "replace")
        self.server.log("commands.log", {"conn": self.conn, "tls": self.tls, "line": text})
        return text

    def run(self):
        self.send(b"* OK hostile.test IMAP4rev1 ready\r\n")
        while True:
            line = self.line()
            if line is None:
                return
            tag, _, rest = line.partition(" ")
            verb, _, args = rest.partition(" ")
            verb = verb.upper()
            if verb == "CAPABILITY":
                self.send(f"* CAPABILITY {self.capabilities()}\r\n{tag} OK CAPABILITY completed\r\n".encode())
            elif verb == "STARTTLS" and not self.tls:
                self.send(f"{tag} OK Begin TLS negotiation now\r\n".encode())
                self.starttls()
            elif not self.tls and verb in ("AUTHENTICATE", "LOGIN"):
                self.send(f"{tag} NO [PRIVACYREQUIRED] STARTTLS first\r\n".encode())
            elif verb == "AUTHENTICATE":
                if len(args.split(" ")) < 2:
                    self.send(b"+ \r\n")
                    if self.line() is None:
                        return
                self.send(f"{tag} OK AUTHENTICATE completed\r\n".encode())
            elif verb == "LOGIN":
                self.send(f"{tag} OK LOGIN completed\r\n".encode())
            elif verb == "LIST":
                self.send(b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
                          b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\n'
                          + f"{tag} OK LIST completed\r\n".encode())
            elif verb == "EXAMINE":
                self.send(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                          b"* 0 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n"
                          b"* OK [UIDNEXT 1] Predicted next UID\r\n"
                          + f"{tag} OK [READ-ONLY] EXAMINE completed\r\n".encode())
            elif verb == "APPEND":
                if not self.append(tag, line):
                    return
            elif verb == "LOGOUT":
                self.send(f"* BYE hostile.test logging out\r\n{tag} OK LOGOUT completed\r\n".encode())
                return
            elif verb in ("CREATE", "NOOP", "SELECT"):
                self.send(f"{tag} OK {verb} completed\r\n".encode())
            else:
                self.send(f"{tag} BAD unknown command\r\n".encode())

    def capabilities(self):
        if self.tls:
            return "IMAP4rev1 AUTH=PLAIN SPECIAL-USE UIDPLUS"
        return "IMAP4rev1 STARTTLS LOGINDISABLED"

    def starttls(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server.args.cert, self.server.args.key)
        self.sock = context.wrap_socket(self.sock, server_side=True)
        self.tls = True
        # Nothing the client sent in clear is taken as said over TLS.
        self.buf = b""

    def append(self, tag, line):
        """One APPEND, as the mode has it; False once the connection is done with."""
        mode = self.server.args.mode
        found = LITERAL.search(line.encode())
        if found is None:
            self.send(f"{tag} BAD APPEND takes a synchronizing literal {{N}}\r\n".encode())
            return True
        size = int(found.group(1))
        self.send(b"+ Ready for literal data\r\n")
        if mode == "append-reset":
            self.reset_after(64 * 1024)
            return False
        literal = self.literal(size)
        if literal is None:
            return False
        with self.server.lock:
            self.server.appends += 1
            n = self.server.appends
        with open(os.path.join(self.server.args.dir, f"append-{n}.bin"), "wb") as f:
            f.write(literal)
        # The rest of the command line: for APPEND, just its CRLF.
        if self.raw_line() is None:
            return False
        if mode == "append-close":
            self.server.log("closed.log", {"conn": self.conn, "by": "server"})
            return False
        if mode == "append-hang":
            self.silent()
            return False
        self.send(f"{tag} OK [APPENDUID 1 {n}] APPEND completed\r\n".encode())
        return True

    def literal(self, size):
        """The literal's `size` bytes; None when the client closed first."""
        data = bytearray()
        while len(data) < size:
            chunk = self.recv()
            if not chunk:
                return None
            data += chunk
        self.buf = bytes(data[size:]) + self.buf
        return bytes(data[:size])

    def silent(self):
        """Answer nothing more: read and log lines until the client closes."""
        while self.line() is not None:
            pass
        self.server.log("closed.log", {"conn": self.conn, "by": "client"})

    def reset_after(self, n):
        """Read `n` bytes of the literal, then reset the connection (RST, not FIN)."""
        got = len(self.buf)
        self.buf = b""
        while got < n:
            chunk = self.sock.recv(CHUNK)
            if not chunk:
                break
            got += len(chunk)
        self.server.log("reset.log", {"conn": self.conn, "read": got})
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


if __name__ == "__main__":
    sys.exit(main())
