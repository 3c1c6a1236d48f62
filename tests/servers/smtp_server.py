#!/usr/bin/env python3
"""The project's own SMTP test server: a scriptable submission server on loopback.

It is for tests and the demo only: it stores what it receives and records every command it was
sent, so a test can check what a sender did, not only what it said. It must never bind anything
but 127.0.0.1, never relay mail anywhere, and never write a password or an AUTH payload to disk.

Ports (any subset, each optional):
  --starttls-port N  STARTTLS is offered and required before anything else; AUTH only after it;
                     AUTH required to send.
  --smtps-port N     TLS from the first byte (implicit TLS); AUTH required to send.
  --plain-port N     no TLS at all: EHLO does not offer STARTTLS but does offer AUTH, so a careless
                     client would send its credentials in clear (and the log would show it).

Users: --users alice:secret,bob:pw (AUTH PLAIN and LOGIN).
Recipients: user@refused.test is refused at RCPT with 550, user@tempfail.test with 451, others
are accepted.

Files written in --dir DIR:
  received/NNNN.eml   each accepted message, the bytes as received
  received/NNNN.json  {"mail_from", "rcpt_tos", "auth_user", "port"}
  commands.log        one JSON object a line for every command line received:
                      {"conn", "port", "tls", "line"}; `tls` says whether the connection was
                      encrypted when the line arrived; AUTH payloads are written as "<auth data>".

Prints one line `READY` on stdout once every port answers with a 220 greeting; stops on SIGTERM.
Needs aiosmtpd 1.4 (`python3 -m pip install aiosmtpd`).
"""

import argparse
import asyncio
import itertools
import json
import logging
import os
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"
REFUSED_DOMAIN = "refused.test"
TEMPFAIL_DOMAIN = "tempfail.test"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="where received mail and commands.log go")
    p.add_argument("--cert", help="PEM certificate chain of the server (leaf first)")
    p.add_argument("--key", help="PEM private key of the server certificate")
    p.add_argument("--users", default="", help="user:password,user:password")
    p.add_argument("--starttls-port", type=int)
    p.add_argument("--smtps-port", type=int)
    p.add_argument("--plain-port", type=int)
    args = p.parse_args()
    if not (args.starttls_port or args.smtps_port or args.plain_port):
        p.error("give at least one of --starttls-port, --smtps-port, --plain-port")
    if (args.starttls_port or args.smtps_port) and not (args.cert and args.key):
        p.error("--starttls-port and --smtps-port need --cert and --key")
    return args


class Store:
    """Writes accepted messages and the command log. One event loop runs everything, so no lock."""

    def __init__(self, directory):
        self.received = os.path.join(directory, "received")
        os.makedirs(self.received, exist_ok=True)
        self.log = open(os.path.join(directory, "commands.log"), "a", encoding="utf-8")
        self.count = 0
        self.conn_ids = itertools.count(1)

    def command(self, conn, port, tls, line):
        entry = {"conn": conn, "port": port, "tls": tls, "line": line}
        self.log.write(json.dumps(entry) + "\n")
        self.log.flush()

    def message(self, raw, meta):
        self.count += 1
        base = os.path.join(self.received, f"{self.count:04d}")
        # The .json goes last, through a rename: a reader that sees it sees a complete pair.
        with open(base + ".eml", "wb") as f:
            f.write(raw)
        with open(base + ".json.tmp", "w", encoding="utf-8") as f:
            json.dump(meta, f)
        os.replace(base + ".json.tmp", base + ".json")
        return f"{self.count:04d}"


def redact(line):
    """`AUTH PLAIN <base64>` -> `AUTH PLAIN <auth data>`: the mechanism stays, the secret goes."""
    words = line.split(" ")
    if words[0].upper() == "AUTH" and len(words) > 2:
        return " ".join(words[:2] + ["<auth data>"])
    return line


class RecordingSMTP(SMTP):
    """aiosmtpd's SMTP that records each command line with its port and TLS state.

    aiosmtpd 1.4 reads command lines with `reader.readuntil()` (default separator), AUTH
    continuation lines with `reader.readline()`, and DATA lines with `readuntil(b"\\r\\n")`.
    Wrapping those reads on this connection's reader records exactly the lines the server acts
    on, in order, and never the message content.
    """

    def __init__(self, handler, *, store, port, **kwargs):
        super().__init__(handler, **kwargs)
        self._store = store
        self._port = port
        self._conn = next(store.conn_ids)

    def _is_tls(self):
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    def _record(self, line):
        self._store.command(self._conn, self._port, self._is_tls(), line)

    def _cb_client_connected(self, reader, writer):
        super()._cb_client_connected(reader, writer)
        read_until, read_line = reader.readuntil, reader.readline
        # StreamReader.readline() calls self.readuntil(): while inside it, record nothing there.
        in_readline = False

        async def readuntil(separator=b"\n"):
            data = await read_until(separator)
            if separator == b"\n" and not in_readline:  # a command line, not a DATA line
                text = data.rstrip(b"\r\n").decode("utf-8", errors="replace")
                self._record(redact(text))
            return data

        async def readline():
            nonlocal in_readline
            in_readline = True
            try:
                data = await read_line()
            finally:
                in_readline = False
            self._record("<auth data>")  # only AUTH exchanges read with readline()
            return data

        reader.readuntil, reader.readline = readuntil, readline


class Handler:
    def __init__(self, store, port):
        self.store = store
        self.port = port

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rpartition("@")[2].lower()
        if domain == REFUSED_DOMAIN:
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        if domain == TEMPFAIL_DOMAIN:
            return f"451 4.3.0 <{address}>: try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        auth = session.auth_data
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": auth.login.decode() if isinstance(auth, LoginPassword) else None,
            "port": self.port,
        }
        queue_id = self.store.message(raw, meta)
        return f"250 2.0.0 OK queued as {queue_id}"


def authenticator_for(users):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and users.get(
            auth_data.login.decode(errors="replace")
        ) == auth_data.password.decode(errors="replace")
        # handled=False: aiosmtpd then replies 535 itself on failure; with its default
        # handled=True a failed login gets no reply at all and the client hangs.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


async def wait_for_greeting(port, tls):
    """Connect like a client and read the 220 greeting; send nothing, so nothing is logged."""
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port, ssl=ctx), 10)
    try:
        greeting = await asyncio.wait_for(reader.readline(), 10)
        if not greeting.startswith(b"220"):
            raise RuntimeError(f"port {port} greeted with {greeting!r}")
    finally:
        writer.close()


async def serve(args):
    users = dict(u.split(":", 1) for u in args.users.split(",") if u)
    store = Store(args.dir)
    tls_ctx = None
    if args.cert and args.key:
        tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_ctx.load_cert_chain(args.cert, args.key)

    common = dict(
        hostname="localhost",
        authenticator=authenticator_for(users),
        auth_required=True,
    )
    # (port, implicit TLS?, SMTP keyword arguments)
    listeners = []
    if args.starttls_port:
        listeners.append((args.starttls_port, False, dict(
            tls_context=tls_ctx, require_starttls=True, auth_require_tls=True)))
    if args.smtps_port:
        # auth_require_tls only counts STARTTLS: on an implicit-TLS port it must be False, or
        # every AUTH gets 538 on an already encrypted connection.
        listeners.append((args.smtps_port, True, dict(auth_require_tls=False)))
    if args.plain_port:
        # No tls_context: STARTTLS is not offered. auth_require_tls=False: AUTH is offered anyway.
        listeners.append((args.plain_port, False, dict(auth_require_tls=False)))

    loop = asyncio.get_running_loop()
    servers = []
    for port, implicit, kwargs in listeners:
        def factory(port=port, kwargs=kwargs):
            return RecordingSMTP(Handler(store, port), store=store, port=port, **common, **kwargs)

        servers.append(await loop.create_server(
            factory, host=HOST, port=port, ssl=tls_ctx if implicit else None))

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    for port, implicit, _ in listeners:
        await wait_for_greeting(port, implicit)
    print("READY", flush=True)

    await stop.wait()
    for server in servers:
        server.close()


def main():
    args = parse_args()
    # The plain port offers AUTH without TLS on purpose; aiosmtpd warns about that on every
    # connection (a Python warning and a log line). Keep stderr for real trouble.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    try:
        asyncio.run(serve(args))
    except OSError as e:  # most often: a port is taken
        print(f"smtp_server: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
