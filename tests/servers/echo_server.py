#!/usr/bin/env python3
"""A hostile test server that hands back what it was sent, or floods: one protocol, one mode.

It is for tests only: it proves the host never lets a secret through what a server says, and
bounds what a server makes it hold. It binds 127.0.0.1 only; standard library only.

  --protocol smtp   STARTTLS (required), then AUTH PLAIN and LOGIN; every AUTH answer is a 535
                    that quotes the line it got, and for LOGIN also the decoded password.
  --protocol imap   STARTTLS (required), then:
                    --mode echo   LOGIN and AUTHENTICATE PLAIN answered NO, quoting what came
                                  (and its base64 decoded); --plain offers AUTH=PLAIN
                    --mode flood  any login works; LIST answers with endless `* LIST` lines
  --protocol https  every request answered 200 with the request line, headers and body
                    reflected in the body and in an `X-Echo` header

Prints `READY PORT` on stdout once listening; stops on SIGTERM. Writes `requests.log` in --dir:
one line per line received (for https: the request line and headers), so a test can see what a
client sent.
"""

import argparse
import asyncio
import base64
import os
import ssl
import sys

HOST = "127.0.0.1"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=["smtp", "imap", "https"], required=True)
    p.add_argument("--mode", default="echo", choices=["echo", "flood"])
    p.add_argument("--plain", action="store_true", help="IMAP: offer AUTH=PLAIN")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--dir", required=True)
    return p.parse_args()


def decoded(b64):
    try:
        return base64.b64decode(b64).decode("utf-8", "replace").replace("\0", "\\0")
    except Exception:
        return "(not base64)"


class Server:
    def __init__(self, args):
        self.args = args
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(args.cert, args.key)
        self.log = open(os.path.join(args.dir, "requests.log"), "a", buffering=1)

    def record(self, line):
        self.log.write(line.decode("utf-8", "replace").rstrip("\r\n") + "\n")

    async def readline(self, reader):
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        self.record(line)
        return line.decode("utf-8", "replace").rstrip("\r\n")

    async def smtp(self, reader, writer):
        say = lambda text: writer.write(text.encode() + b"\r\n")
        say("220 echo.test ESMTP")
        secure = False
        while True:
            line = await self.readline(reader)
            verb = line.split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250-echo.test")
                say("250-AUTH PLAIN LOGIN" if secure else "250-STARTTLS")
                say("250 8BITMIME")
            elif verb == "STARTTLS":
                say("220 go ahead")
                await writer.drain()
                await writer.start_tls(self.tls)
                secure = True
            elif verb == "AUTH" and line.upper().startswith("AUTH LOGIN"):
                say("334 VXNlcm5hbWU6")
                user = await self.readline(reader)
                say("334 UGFzc3dvcmQ6")
                password = await self.readline(reader)
                say(f"535 5.7.8 you said {user} {password}, that is {decoded(password)}")
            elif verb == "AUTH":
                payload = line.split(" ")[2] if line.count(" ") >= 2 else ""
                say(f"535 5.7.8 you said: {line} ({decoded(payload)})")
            elif verb == "QUIT":
                say("221 bye")
                await writer.drain()
                return
            else:
                say(f"502 5.5.2 no: {line}")
            await writer.drain()

    async def imap(self, reader, writer):
        say = lambda text: writer.write(text.encode() + b"\r\n")
        say("* OK IMAP4rev1 echo ready")
        secure = False
        while True:
            line = await self.readline(reader)
            tag, _, rest = line.partition(" ")
            verb = rest.split(" ")[0].upper()
            if verb == "CAPABILITY":
                caps = "IMAP4rev1"
                if not secure:
                    caps += " STARTTLS"
                elif self.args.plain:
                    caps += " AUTH=PLAIN"
                say(f"* CAPABILITY {caps}")
                say(f"{tag} OK done")
            elif verb == "STARTTLS":
                say(f"{tag} OK begin TLS")
                await writer.drain()
                await writer.start_tls(self.tls)
                secure = True
            elif verb == "LOGIN":
                if self.args.mode == "flood":
                    say(f"{tag} OK logged in")
                else:
                    say(f"{tag} NO [AUTHENTICATIONFAILED] you said: {rest}")
            elif verb == "AUTHENTICATE":
                say("+ ")
                await writer.drain()
                response = await self.readline(reader)
                if self.args.mode == "flood":
                    say(f"{tag} OK logged in")
                else:
                    say(f"{tag} NO [AUTHENTICATIONFAILED] you said {response} = {decoded(response)}")
            elif verb == "LIST" and self.args.mode == "flood":
                # Endless folders: far more than any bound a client should keep.
                for i in range(5_000_000):
                    say(f'* LIST () "/" "folder-{i:09d}"')
                    if i % 1000 == 0:
                        await writer.drain()
                say(f"{tag} OK listed")
            elif verb == "LOGOUT":
                say("* BYE")
                say(f"{tag} OK bye")
                await writer.drain()
                return
            else:
                say(f"{tag} OK")
            await writer.drain()

    async def https(self, reader, writer):
        head = []
        while True:
            line = await reader.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
            self.record(line)
            head.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        length = 0
        for h in head[1:]:
            name, _, value = h.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip() or 0)
        body = await reader.readexactly(length) if length else b""
        echo = (" | ".join(head)).encode() + b" || " + body
        header_echo = " | ".join(head[1:]).encode("ascii", "replace")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Echo: " + header_echo
            + b"\r\nContent-Length: " + str(len(echo)).encode() + b"\r\nConnection: close\r\n\r\n"
            + echo
        )
        await writer.drain()

    async def handle(self, reader, writer):
        try:
            await getattr(self, self.args.protocol)(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass


async def main():
    args = parse_args()
    server = Server(args)
    tls = server.tls if args.protocol == "https" else None
    listener = await asyncio.start_server(server.handle, HOST, 0, ssl=tls, limit=1 << 20)
    port = listener.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
