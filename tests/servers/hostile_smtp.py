#!/usr/bin/env python3
"""A hostile SMTP server for the end-to-end tests: each mode is one way a server (or something
on the path before TLS) misbehaves on purpose. Python standard library only.

| mode | what it does |
|---|---|
| endless-greeting | a greeting line that never ends: "220 " and then bytes without LF, up to --limit or until the client closes |
| long-multiline | a normal greeting, then to EHLO endless "250-" continuation lines, up to --limit |
| starttls-inject | offers STARTTLS; answers it with "220 Ready\\r\\n250 fake\\r\\n" in one write, then does TLS and accepts everything |
| reflect | a plaintext server that accepts mail and records the raw DATA bytes; it takes a bare LF "." line as the end of DATA, as servers open to SMTP smuggling do |
| stall-after-greeting | plaintext; greets, answers EHLO, and never answers MAIL FROM |
| stall-at-rcpt | plaintext; answers up to MAIL FROM, never answers RCPT TO |
| stall-at-data-end | plaintext; answers DATA with 354, reads the whole message, never answers its final "." |
| close-at-data-end | plaintext; reads the whole message, then closes the connection without answering its final "." |
| reset-mid-data | plaintext; answers DATA with 354, reads 64 KiB of the message, then resets the connection |
| reply | plaintext; accepts everything, except that each `--reply STEP=CODE` (STEP: MAIL, RCPT, DATA, END for the final ".") answers that step with CODE; RCPT's applies only to recipients at refused.test |
| stall-reading-data | plaintext; answers DATA with 354, then never reads again (a client's writes fill the socket's buffers and block) |
| quit-never-answered | plaintext; accepts the message, never answers QUIT |
| starttls | a well-behaved STARTTLS server (with --cert and --key) that accepts everything: for a client that does not trust its CA |
| starttls-454 | offers STARTTLS and answers it "454 4.7.0 TLS not available due to temporary reason" |
| starttls-cut | offers STARTTLS, answers it "220 Ready", then closes the socket before any handshake |
| slow | plaintext; accepts everything, but answers each message's final "." only after 1 s; logs in `sessions.log` how many sessions were open as each began |

A server that "never answers" keeps reading (and logging) what the client sends until the client
closes, so a test sees what the client sent after the stall, and when it gave up.

It listens on 127.0.0.1 only, on a free port it prints as "READY <port>". It writes into --dir:
`commands.log` (one JSON line per command line heard: conn, tls, line; AUTH data as sent),
`sent.log` (the bytes each endless reply wrote before the client closed) and, in reflect mode,
`data-N.bin` (each DATA's raw bytes, up to and including the line that ended it; also in slow
mode).
"""

import argparse
import json
import os
import socket
import ssl
import sys
import threading
import time

CHUNK = 64 * 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True,
                        choices=["endless-greeting", "long-multiline", "starttls-inject", "reflect",
                                 "stall-after-greeting", "stall-at-rcpt", "stall-at-data-end", "stall-reading-data",
                                 "close-at-data-end", "reset-mid-data", "reply",
                                 "quit-never-answered", "starttls", "starttls-454", "starttls-cut", "slow"])
    parser.add_argument("--reply", action="append", default=[],
                        help="STEP=CODE: answer MAIL, RCPT, DATA or END (the final \".\") with CODE")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--limit", type=int, default=2 << 30, help="bytes an endless reply may write")
    args = parser.parse_args()
    args.replies = dict(r.split("=", 1) for r in args.reply)

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
        self.open = 0
        self.lock = threading.Lock()
        self.messages = 0

    def log(self, name, record):
        with self.lock, open(os.path.join(self.args.dir, name), "a") as f:
            f.write(json.dumps(record) + "\n")

    def serve(self, sock, conn):
        with self.lock:
            self.open += 1
            record = {"conn": conn, "open": self.open}
        self.log("sessions.log", record)
        try:
            Session(self, sock, conn).run()
        except (OSError, ssl.SSLError) as e:
            self.log("errors.log", {"conn": conn, "error": repr(e)})
        finally:
            try:
                sock.close()
            except OSError:
                pass
            with self.lock:
                self.open -= 1


class Session:
    def __init__(self, server, sock, conn):
        self.server = server
        self.sock = sock
        self.conn = conn
        self.tls = False
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def endless(self, head, filler):
        """Write `head`, then `filler` over and over, up to the limit or until the client closes."""
        sent = 0
        try:
            self.send(head)
            sent = len(head)
            block = filler * max(1, CHUNK // len(filler))
            while sent < self.server.args.limit:
                self.send(block)
                sent += len(block)
        except OSError:
            pass
        self.server.log("sent.log", {"conn": self.conn, "bytes": sent})

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(CHUNK)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self.server.log("commands.log", {"conn": self.conn, "tls": self.tls, "line": text})
        return text

    def run(self):
        mode = self.server.args.mode
        if mode == "endless-greeting":
            self.endless(b"220 ", b"x")
            return
        self.send(b"220 hostile.test ESMTP\r\n")
        while True:
            line = self.line()
            if line is None:
                return
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                if mode == "long-multiline":
                    self.endless(b"250-hostile.test\r\n", b"250-PIPELINING-AND-THEN-SOME\r\n")
                    return
                self.ehlo()
            elif verb == "STARTTLS" and mode == "starttls-inject" and not self.tls:
                self.send(b"220 Ready\r\n250 fake\r\n")
                self.starttls()
            elif verb == "STARTTLS" and mode == "starttls" and not self.tls:
                self.send(b"220 Ready\r\n")
                self.starttls()
            elif verb == "STARTTLS" and mode == "starttls-454":
                self.send(b"454 4.7.0 TLS not available due to temporary reason\r\n")
            elif verb == "STARTTLS" and mode == "starttls-cut":
                self.send(b"220 Ready\r\n")
                self.sock.shutdown(socket.SHUT_RDWR)
                return
            elif (verb, mode) in (("MAIL", "stall-after-greeting"), ("RCPT", "stall-at-rcpt"),
                                  ("QUIT", "quit-never-answered")):
                self.silent()
                return
            elif verb in self.server.args.replies and (verb != "RCPT" or "@refused.test" in line):
                self.refuse(verb)
            elif verb == "AUTH":
                if len(line.split(" ")) < 3:
                    self.send(b"334 \r\n")
                    self.line()
                self.send(b"235 2.7.0 Authentication successful\r\n")
            elif verb == "DATA":
                self.send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                if mode == "stall-reading-data":
                    self.server.log("stalled.log", {"conn": self.conn})
                    threading.Event().wait()
                if mode == "reset-mid-data":
                    self.reset_after(64 * 1024)
                    return
                answer = mode not in ("stall-at-data-end", "close-at-data-end")
                if not self.data(answer=answer, end_code=self.server.args.replies.get("END")):
                    if mode == "close-at-data-end":
                        self.server.log("closed.log", {"conn": self.conn})
                        return
                    self.silent()
                    return
            elif verb == "QUIT":
                self.send(b"221 Bye\r\n")
                return
            else:
                self.send(b"250 OK\r\n")

    def ehlo(self):
        lines = ["hostile.test", "8BITMIME", "SMTPUTF8"]
        if self.server.args.mode in ("starttls-inject", "starttls", "starttls-454",
                                      "starttls-cut"):
            lines += ["AUTH PLAIN LOGIN"] if self.tls else ["STARTTLS"]
        reply = "".join(f"250-{l}\r\n" for l in lines[:-1]) + f"250 {lines[-1]}\r\n"
        self.send(reply.encode())

    def starttls(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server.args.cert, self.server.args.key)
        self.sock = context.wrap_socket(self.sock, server_side=True)
        self.tls = True
        self.buf = b""

    def silent(self):
        """Answer nothing more: read and log lines until the client closes."""
        while self.line() is not None:
            pass
        self.server.log("closed.log", {"conn": self.conn})

    def refuse(self, step):
        code = self.server.args.replies[step]
        self.send(f"{code} {code[0]}.0.0 {step} refused by --reply\r\n".encode())

    def reset_after(self, n):
        """Read `n` bytes of the message, then reset the connection (RST, not FIN)."""
        got = len(self.buf)
        while got < n:
            chunk = self.sock.recv(CHUNK)
            if not chunk:
                break
            got += len(chunk)
        self.server.log("reset.log", {"conn": self.conn, "read": got})
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    def data(self, answer=True, end_code=None):
        """Raw bytes up to a line "." ended by CRLF or by a bare LF (as a lenient server would);
        True once the message is stored and, if `answer`, its 250 (or `end_code`) sent. A
        message answered with a refusal is not stored."""
        refusal = end_code is not None
        data = b""
        while True:
            found = [(at, end) for end in (b"\r\n.\r\n", b"\n.\n", b"\n.\r\n", b"\r\n.\n")
                     if (at := data.find(end)) >= 0]
            if found:
                at, end = min(found)
                whole, self.buf = data[: at + len(end)], data[at + len(end):]
                if refusal:
                    self.refuse("END")
                    return True
                with self.server.lock:
                    self.server.messages += 1
                    n = self.server.messages
                with open(os.path.join(self.server.args.dir, f"data-{n}.bin"), "wb") as f:
                    f.write(whole)
                if not answer:
                    return False
                if self.server.args.mode == "slow":
                    time.sleep(1)
                self.send(f"250 2.0.0 Ok: queued as {n}\r\n".encode())
                return True
            chunk = self.buf or self.sock.recv(CHUNK)
            self.buf = b""
            if not chunk:
                return True
            data += chunk


if __name__ == "__main__":
    sys.exit(main())
