#!/usr/bin/env python3
"""The project's SendGrid stand-in: the parts of SendGrid's v3 API a mail sender uses, on
loopback over TLS, checking every request against SendGrid's documented shapes and answering as
SendGrid does.

It is for tests only. It must never bind anything but 127.0.0.1, never forward anything, and it
must refuse whatever SendGrid would refuse: a stand-in that accepts anything proves nothing.

  POST /v3/mail/send   202 Accepted, empty body, X-Message-Id
  GET  /v3/scopes      200 {"scopes": [...]} for the API key

What its front end checks on every request, before the path and the API key, as SendGrid's
(nginx) does, answering with nginx's HTML error page: a POST has a Content-Length (411 Length
Required without one); a Content-Length is one decimal number, not given twice with different
values (400); a body is at most 30 MB, SendGrid's limit on a message's total size (413, without
reading the key; the body is then read and discarded, bounded, so the client sees the answer).

What it checks on mail/send: `Authorization: Bearer <the API key>` (401 otherwise),
`Content-Type: application/json` and a JSON object, nested no deeper than the parser follows
(400); only documented top-level properties; `personalizations` 1..1000 entries, each with a
non-empty `to`, `cc` and `bcc` lists of {email, name?}, each address once across to/cc/bcc, at
most 1000 recipients in all; `from` {email, name?}; `reply_to` or `reply_to_list`, not both; a
non-empty `subject`; `content` non-empty, each {type, value} with a value of at least one
character and text/plain first; `attachments` a list of {content (strict base64), filename,
type?, disposition (attachment or inline), content_id (for inline)}; `custom_args` string to
string. The 401 is answered for `GET /v3/scopes` too. Errors past the front end are SendGrid's
body: {"errors": [{"message", "field", "help"}]}. Unknown paths are 404 (after the front end,
before the key).

No request crashes the handler: one it did not foresee is answered 500 in SendGrid's error body
and the traceback is written to stderr.

Faults (DIR/faults.json, read at every request; each entry is used once):
  [{"id": "f1", "op": "mail/send", "status": 429, "retry_after": 7, "message": "..."}]

Files written in --dir DIR:
  requests.jsonl   one line a request: {"method", "path", "op", "status"}
  sent/NNNN.json   each accepted mail/send: {"message_id", "body"} (the JSON as received)

Prints `READY <port>` on stdout once it listens; stops on SIGTERM.
Needs only the Python standard library.
"""

import argparse
import base64
import binascii
import http.server
import json
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import traceback

HOST = "127.0.0.1"
MAX_BODY = 30 * 1000 * 1000
LENGTH = re.compile(r"[0-9]{1,30}")
ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
TOP_LEVEL = {"personalizations", "from", "reply_to", "reply_to_list", "subject", "content",
             "attachments", "template_id", "headers", "categories", "custom_args", "send_at",
             "batch_id", "asm", "ip_pool_name", "mail_settings", "tracking_settings"}
PERSONALIZATION = {"to", "cc", "bcc", "from", "subject", "headers", "substitutions",
                   "dynamic_template_data", "custom_args", "send_at"}
SCOPES = ["mail.send", "user.profile.read"]


class Reply(Exception):
    """An answer other than success, raised from deep in a check."""

    def __init__(self, status, message, field=None, headers=None):
        super().__init__(message)
        self.status = status
        self.body = {"errors": [{"message": message, "field": field, "help": None}]}
        self.headers = headers or {}


def bad(message, field=None):
    return Reply(400, message, field)


def nginx(status, reason):
    """An answer of SendGrid's front end: nginx's own HTML error page, not the API's JSON."""
    r = Reply(status, reason)
    r.body = (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
              f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
              "</body>\r\n</html>\r\n").encode()
    return r


def check_email(value, field):
    if not isinstance(value, dict):
        raise bad("The email object must be an object.", field)
    unknown = set(value) - {"email", "name"}
    if unknown:
        raise bad(f"Unknown property {sorted(unknown)[0]}.", field)
    email = value.get("email")
    if not isinstance(email, str) or not ADDRESS.match(email):
        raise bad("Does not contain a valid address.", f"{field}.email")
    if "name" in value and not isinstance(value["name"], str):
        raise bad("The name must be a string.", f"{field}.name")
    return email.lower()


def check_mail_send(body):
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.")
    unknown = set(body) - TOP_LEVEL
    if unknown:
        raise bad(f"Unknown property {sorted(unknown)[0]}.", sorted(unknown)[0])
    ps = body.get("personalizations")
    if not isinstance(ps, list) or not 1 <= len(ps) <= 1000:
        raise bad("The personalizations field is required and must have at least one "
                  "personalization.", "personalizations")
    total = 0
    for i, p in enumerate(ps):
        field = f"personalizations.{i}"
        if not isinstance(p, dict) or set(p) - PERSONALIZATION:
            raise bad("Unknown property in a personalization.", field)
        to = p.get("to")
        if not isinstance(to, list) or not to:
            raise bad("The to array is required for all personalization objects, and must have "
                      "at least one email object with a valid email address.", f"{field}.to")
        seen = set()
        for kind in ("to", "cc", "bcc"):
            if kind not in p:
                continue
            if not isinstance(p[kind], list) or not p[kind]:
                raise bad(f"The {kind} array must have at least one email object.",
                          f"{field}.{kind}")
            for j, e in enumerate(p[kind]):
                email = check_email(e, f"{field}.{kind}.{j}")
                if email in seen:
                    raise bad("Each email address in the personalization block should be unique "
                              "between to, cc, and bcc. We found the first duplicate instance of "
                              f"[{email}] in the personalizations.{i}.{kind} field.",
                              f"{field}.{kind}")
                seen.add(email)
                total += 1
    if total > 1000:
        raise bad("The total number of recipients must be no more than 1000.", "personalizations")
    if "from" not in body:
        raise bad("The from object must be provided for every email send.", "from")
    check_email(body["from"], "from")
    if "reply_to" in body and "reply_to_list" in body:
        raise bad("reply_to and reply_to_list cannot be used together.", "reply_to_list")
    if "reply_to" in body:
        check_email(body["reply_to"], "reply_to")
    if "reply_to_list" in body:
        rl = body["reply_to_list"]
        if not isinstance(rl, list) or not rl:
            raise bad("The reply_to_list must have at least one email object.", "reply_to_list")
        for j, e in enumerate(rl):
            check_email(e, f"reply_to_list.{j}")
    subject = body.get("subject")
    if not isinstance(subject, str) or not subject:
        raise bad("The subject is required. You can get around this requirement if you use a "
                  "template with a subject defined or if every personalization has a subject "
                  "defined.", "subject")
    content = body.get("content")
    if not isinstance(content, list) or not content:
        raise bad("Unless a valid template_id is provided, the content parameter is required. "
                  "There must be at least one defined content block.", "content")
    for j, c in enumerate(content):
        if not isinstance(c, dict) or set(c) != {"type", "value"}:
            raise bad("Content blocks have exactly type and value.", f"content.{j}")
        if not isinstance(c["type"], str) or not c["type"]:
            raise bad("The content type is required.", f"content.{j}.type")
        if not isinstance(c["value"], str) or not c["value"]:
            raise bad("The content value must be a string at least one character in length.",
                      f"content.{j}.value")
        if c["type"] == "text/plain" and j != 0:
            raise bad("If present, text/plain must be first, followed by any other content.",
                      "content")
    if not isinstance(body.get("attachments", []), list):
        raise bad("The attachments must be an array of attachment objects.", "attachments")
    for j, a in enumerate(body.get("attachments", [])):
        field = f"attachments.{j}"
        if not isinstance(a, dict) or set(a) - {"content", "filename", "type", "disposition",
                                                 "content_id"}:
            raise bad("Unknown property in an attachment.", field)
        data = a.get("content")
        if not isinstance(data, str) or not data or not B64.match(data) or len(data) % 4:
            raise bad("The attachment content must be base64 encoded.", f"{field}.content")
        try:
            base64.b64decode(data, validate=True)
        except binascii.Error:
            raise bad("The attachment content must be base64 encoded.", f"{field}.content")
        if not isinstance(a.get("filename"), str) or not a["filename"]:
            raise bad("The attachment filename parameter is required.", f"{field}.filename")
        if "type" in a and (not isinstance(a["type"], str) or ";" in a["type"]
                            or "\n" in a["type"]):
            raise bad("The attachment type must be a MIME type without parameters.",
                      f"{field}.type")
        disposition = a.get("disposition", "attachment")
        if disposition not in ("attachment", "inline"):
            raise bad("The disposition must be attachment or inline.", f"{field}.disposition")
        if disposition == "inline" and not a.get("content_id"):
            raise bad("The content_id parameter is required for inline attachments.",
                      f"{field}.content_id")
    args = body.get("custom_args", {})
    if not isinstance(args, dict) or any(not isinstance(v, str) for v in args.values()):
        raise bad("custom_args values must be strings.", "custom_args")


class State:
    def __init__(self, directory, api_key):
        self.dir = directory
        self.api_key = api_key
        self.lock = threading.Lock()
        self.sent = 0
        os.makedirs(os.path.join(directory, "sent"), exist_ok=True)

    def take_fault(self, op):
        path = os.path.join(self.dir, "faults.json")
        used_path = os.path.join(self.dir, "faults.used")
        with self.lock:
            try:
                with open(path) as f:
                    faults = json.load(f)
            except (OSError, ValueError):
                return None
            try:
                with open(used_path) as f:
                    used = set(f.read().split())
            except OSError:
                used = set()
            for fault in faults:
                if fault.get("op") == op and fault["id"] not in used:
                    with open(used_path, "a") as f:
                        f.write(fault["id"] + "\n")
                    return fault
        return None

    def log(self, method, path, op, status):
        with self.lock, open(os.path.join(self.dir, "requests.jsonl"), "a") as f:
            f.write(json.dumps({"method": method, "path": path, "op": op, "status": status}) + "\n")

    def record(self, message_id, body):
        with self.lock:
            self.sent += 1
            name = os.path.join(self.dir, "sent", f"{self.sent:04}.json")
            with open(name + ".tmp", "w") as f:
                json.dump({"message_id": message_id, "body": body}, f)
            os.rename(name + ".tmp", name)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sendgrid-stand-in"

    def log_message(self, *args):
        pass

    def answer(self, status, body=None, headers=None):
        if isinstance(body, bytes):
            data, kind = body, "text/html"
        else:
            data, kind = b"" if body is None else json.dumps(body).encode(), "application/json"
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if body is not None:
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The client is gone; there is no one left to answer.
            self.close_connection = True

    def read_body(self, method):
        """The body, by Content-Length, after the front end's checks (see the docstring)."""
        values = [v.strip() for v in self.headers.get_all("Content-Length") or []]
        if not values:
            if method == "POST":
                self.close_connection = True
                raise nginx(411, "Length Required")
            return b""
        if not all(LENGTH.fullmatch(v) for v in values) or len({int(v) for v in values}) > 1:
            self.close_connection = True
            raise nginx(400, "Bad Request")
        length = int(values[0])
        if length > MAX_BODY:
            self.close_connection = True
            r = nginx(413, "Request Entity Too Large")
            r.drain = length
            raise r
        return self.rfile.read(length) if length else b""

    def drain(self, length):
        """Read and discard what the client still sends (at most twice the limit, 10 s), so it
        sees the answer rather than a reset."""
        left = min(length, 2 * MAX_BODY)
        try:
            self.connection.settimeout(10)
            while left > 0:
                chunk = self.rfile.read1(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def handle_any(self, method):
        state = self.server.state
        path = self.path.split("?", 1)[0]
        op = {("POST", "/v3/mail/send"): "mail/send",
              ("GET", "/v3/scopes"): "scopes"}.get((method, path), "unknown")
        try:
            self.handle_checked(state, method, path, op)
        except Exception:
            self.close_connection = True
            sys.stderr.write(f"sendgrid stand-in: unexpected error answering {method} {path}:\n"
                             f"{traceback.format_exc()}")
            sys.stderr.flush()
            r = Reply(500, "Internal server error: the stand-in did not foresee this request.")
            self.answer(r.status, r.body, r.headers)
            state.log(method, path, op, r.status)

    def handle_checked(self, state, method, path, op):
        try:
            raw = self.read_body(method)
            if op == "unknown":
                raise Reply(404, "Not found")
            if self.headers.get("Authorization") != f"Bearer {state.api_key}":
                raise Reply(401, "The provided authorization grant is invalid, expired, or "
                                 "revoked")
            fault = state.take_fault(op)
            if fault:
                headers = {}
                if "retry_after" in fault:
                    headers["Retry-After"] = str(fault["retry_after"])
                raise Reply(fault["status"], fault.get("message", "fault injected"),
                            fault.get("field"), headers)
            if op == "scopes":
                self.answer(200, {"scopes": SCOPES})
                state.log(method, path, op, 200)
                return
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                raise bad("Content-Type should be application/json.")
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                raise bad("Bad Request")
            check_mail_send(body)
            message_id = secrets.token_urlsafe(16)
            state.record(message_id, body)
            self.answer(202, None, {"X-Message-Id": message_id})
            state.log(method, path, op, 202)
        except Reply as r:
            self.answer(r.status, r.body, r.headers)
            state.log(method, path, op, r.status)
            if getattr(r, "drain", None):
                self.drain(r.drain)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    server.state = State(args.dir, args.api_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
