#!/usr/bin/env python3
"""The project's Microsoft Graph stand-in: the identity platform's token endpoint and the parts
of Graph a mail sender uses, on loopback over TLS, checking every request against Microsoft's
documented shapes and answering as Microsoft does.

It is for tests only. It must never bind anything but 127.0.0.1, never forward anything, and it
must refuse whatever Graph would refuse: a stand-in that accepts anything proves nothing.

Three origins, as in Microsoft's cloud (all https://127.0.0.1, ports chosen by the OS):
  login    the token endpoint  POST /{tenant}/oauth2/v2.0/token  (client credentials)
  graph    Graph               GET  /v1.0/users/{id}
                               POST /v1.0/users/{id}/sendMail
                               POST /v1.0/users/{id}/messages                      (draft)
                               POST /v1.0/users/{id}/messages/{mid}/attachments
                               POST /v1.0/users/{id}/messages/{mid}/attachments/createUploadSession
                               POST /v1.0/users/{id}/messages/{mid}/send
                               DELETE /v1.0/users/{id}/messages/{mid}
  upload   the pre-authenticated upload URLs Graph hands out (Outlook's origin in real life):
                               PUT  /api/v2.0/Users('…')/Messages('…')/AttachmentSessions('…')?authtoken=…

What it checks: methods and paths (a request target without a path, such as "*", is 400);
Content-Type; Content-Length (411 without on POST, PUT and PATCH; 400 when it is not one decimal
number, or is given twice with different values; 413 over 4 MiB); the form fields of the token
request (a form body, grant_type client_credentials, client_id, client_secret, a scope ending in
/.default that names its own Graph origin) and the tenant, application and secret; bearer tokens
(an HMAC-signed JWT it issued: signature, audience = its own Graph origin, not before (nbf) and
expiry (exp), both without the 5 minutes of clock skew Microsoft allows (stricter than Graph),
and roles); the token's tenant (tid): a user is looked up only in the directory of the tenant
the token was issued for, so a user of another tenant is not found (404 ErrorInvalidUser, or
Request_ResourceNotFound for GET /users/{id}), as Graph does for an app-only token; every JSON
property name and type of message, recipient, fileAttachment and AttachmentItem (unknown
properties are refused as Graph does); strict base64 in contentBytes; recipients and Send As;
the upload session's size bounds (3 MB to 150 MB), no Authorization header on uploads, the
authtoken, and Content-Range arithmetic (start = next expected, end - start + 1 = length, total
= the declared size, at most 4 MiB a range); a draft is not sent while one of its upload
sessions has bytes still to come.

No request crashes a handler: a request it did not foresee is answered 500 (Graph's
generalException, or AADSTS50000 on the login origin) and the traceback is written to stderr.

Configuration (--config FILE, JSON):
  {"tenants": {"<tenant id>": {"domains": [...], "apps": {"<client id>": {"secret": "...",
     "roles": ["Mail.Send", "Mail.ReadWrite", "User.Read.All"]}}}},
   "users": {"<upn>": {"id": "...", "displayName": "...", "mail": "...", "mailbox": true,
     "send_as": ["other@…"], "tenant": "<tenant id>"}},
   "token_lifetime": 3599,
   "not_before_offset": 0}
  A user belongs to its "tenant", or else to the tenant one of whose domains is its UPN's domain
  (a user that belongs to no tenant is in no directory). Tokens are valid from "not_before_offset"
  seconds after they are issued (their nbf; default 0), for "token_lifetime" seconds from then:
  a positive offset makes the token endpoint hand out tokens that are not yet valid.

Faults (DIR/faults.json, read at every request; each entry is used `times` times, default 1):
  [{"id": "f1", "op": "sendMail", "status": 429, "retry_after": 7, "code": "ApplicationThrottled",
    "message": "..."}]
  ops: token, user, sendMail, createDraft, addAttachment, createUploadSession, upload, send, delete
  An entry with "lose_answer": "hang" or "close" instead of a status does the request in full
  (a sendMail is sent), then loses its answer: it never answers (reading until the client
  closes), or closes the connection. requests.jsonl records its status as 0.

Files written in --dir DIR:
  requests.jsonl   one line a request: {"origin", "method", "path" (no query), "op", "status"}
  issued-secrets.txt  every access token and upload authtoken it issued, one a line
  sent/NNNN.json   each message Graph "sent": {"user", "via", "message"}, where every attachment
                   is {"name", "contentType", "size", "file", "how"} and its bytes are in
                   sent/NNNN-K.bin; "how" is inline, posted or uploaded

Prints `READY <login port> <graph port> <upload port>` on stdout once all listen; stops on
SIGTERM.
Needs only the Python standard library.
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import hmac
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
import urllib.parse
import uuid

HOST = "127.0.0.1"
MAX_REQUEST = 4 * 1024 * 1024
UPLOAD_MIN = 3_000_000
UPLOAD_MAX = 150 * 1024 * 1024
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MESSAGE_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")
B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
LENGTH = re.compile(r"[0-9]{1,30}")


class Reply(Exception):
    """An answer other than success, raised from deep in a check."""

    def __init__(self, status, body=None, headers=None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def graph_error(status, code, message, headers=None):
    return Reply(status, {"error": {"code": code, "message": message, "innerError": {
        "date": now_iso(), "request-id": str(uuid.uuid4()),
        "client-request-id": str(uuid.uuid4())}}}, headers)


def aad_error(status, error, code, text):
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    return Reply(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} "
                             f"Timestamp: {now_iso()}",
        "error_codes": [code],
        "timestamp": now_iso(),
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    })


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime(
        "%m/%d/%Y %H:%M:%S")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def bad_property(prop, type_name):
    return graph_error(
        400, "RequestBodyRead",
        f"The property '{prop}' does not exist on type '{type_name}'. Make sure to only use "
        "property names that are defined by the type or mark the type as open type.")


def bad_type(prop, expected):
    return graph_error(400, "RequestBodyRead",
                       f"Cannot convert the literal for '{prop}' to the expected type '{expected}'.")


class State:
    def __init__(self, directory, config, graph_origin, upload_origin):
        self.dir = directory
        self.config = config
        self.graph_origin = graph_origin
        self.upload_origin = upload_origin
        self.key = secrets.token_bytes(32)
        self.lock = threading.Lock()
        self.drafts = {}      # mid -> {"user", "message", "attachments": [...]}
        self.sessions = {}    # sid -> {"mid", "user", "item", "token", "next", "data"}
        self.used_faults = {}
        self.sent_count = 0
        os.makedirs(os.path.join(directory, "sent"), exist_ok=True)
        self.log = open(os.path.join(directory, "requests.jsonl"), "a", encoding="utf-8")

    def record(self, origin, method, path, op, status):
        with self.lock:
            self.log.write(json.dumps({"origin": origin, "method": method, "path": path,
                                       "op": op, "status": status}) + "\n")
            self.log.flush()

    def fault(self, op):
        try:
            with open(os.path.join(self.dir, "faults.json"), encoding="utf-8") as f:
                faults = json.load(f)
        except (OSError, ValueError):
            return None
        with self.lock:
            for fault in faults:
                if fault.get("op") != op or "lose_answer" in fault:
                    continue
                used = self.used_faults.get(fault["id"], 0)
                if used >= fault.get("times", 1):
                    continue
                self.used_faults[fault["id"]] = used + 1
                headers = {}
                if "retry_after" in fault:
                    headers["Retry-After"] = str(fault["retry_after"])
                if op == "token":
                    reply = aad_error(fault["status"], fault.get("error", "temporarily_unavailable"),
                                      fault.get("aadsts", 50196),
                                      fault.get("message", "The server is busy."))
                    reply.headers = headers
                    return reply
                return graph_error(fault["status"], fault.get("code", "ApplicationThrottled"),
                                   fault.get("message", "Application is over its MailboxConcurrency limit."),
                                   headers)
        return None

    def lost_answer(self, op):
        """How the answer to this request is lost ("hang", "close"), or None."""
        try:
            with open(os.path.join(self.dir, "faults.json"), encoding="utf-8") as f:
                faults = json.load(f)
        except (OSError, ValueError):
            return None
        with self.lock:
            for fault in faults:
                if fault.get("op") != op or "lose_answer" not in fault:
                    continue
                used = self.used_faults.get(fault["id"], 0)
                if used >= fault.get("times", 1):
                    continue
                self.used_faults[fault["id"]] = used + 1
                return fault["lose_answer"]
        return None

    # --- tokens ------------------------------------------------------------------------------

    def issue(self, tenant, client, roles):
        lifetime = int(self.config.get("token_lifetime", 3599))
        now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
        nbf = now + int(self.config.get("not_before_offset", 0))
        header = b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = b64url(json.dumps({"aud": self.graph_origin, "tid": tenant, "appid": client,
                                     "roles": roles, "iat": now, "nbf": nbf,
                                     "exp": nbf + lifetime}).encode())
        sig = b64url(hmac.new(self.key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        token = f"{header}.{payload}.{sig}"
        self.note_issued(token)
        return token, lifetime

    def note_issued(self, secret):
        """Every token handed out goes to issued-secrets.txt: the tests check that no output
        of a run shows one."""
        with self.lock, open(os.path.join(self.dir, "issued-secrets.txt"), "a") as f:
            f.write(secret + "\n")

    def check_token(self, authorization):
        if not authorization:
            raise graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or token.count(".") != 2:
            raise graph_error(401, "InvalidAuthenticationToken",
                              "IDX14100: JWT is not well formed, there are no dots (.).")
        header, payload, sig = token.split(".")
        # As bytes: a header may carry any octet, and compare_digest refuses non-ASCII text.
        signed = f"{header}.{payload}".encode("utf-8", "surrogateescape")
        expected = b64url(hmac.new(self.key, signed, hashlib.sha256).digest())
        if not hmac.compare_digest(sig.encode("utf-8", "surrogateescape"), expected.encode()):
            raise graph_error(401, "InvalidAuthenticationToken",
                              "Access token validation failure. Invalid signature.")
        claims = json.loads(b64url_decode(payload))
        if claims.get("aud") != self.graph_origin:
            raise graph_error(401, "InvalidAuthenticationToken",
                              "Access token validation failure. Invalid audience.")
        # In the order Microsoft.IdentityModel checks a token's lifetime: not before, then expiry.
        now = datetime.datetime.now(datetime.timezone.utc).timestamp()
        if claims["nbf"] > now:
            raise graph_error(401, "InvalidAuthenticationToken",
                              "IDX10222: Lifetime validation failed. The token is not yet valid. "
                              f"ValidFrom (UTC): '{iso(claims['nbf'])}', Current time (UTC): "
                              f"'{iso(now)}'.")
        if claims["exp"] <= now:
            raise graph_error(401, "InvalidAuthenticationToken",
                              "Lifetime validation failed, the token is expired.")
        return claims

    # --- directory -----------------------------------------------------------------------------

    def tenant_of(self, upn, user):
        """The id of the tenant whose directory holds the user, or None."""
        if "tenant" in user:
            return user["tenant"]
        domain = upn.rpartition("@")[2].lower()
        for tid, tenant in self.config.get("tenants", {}).items():
            if domain in (d.lower() for d in tenant.get("domains", [])):
                return tid
        return None

    def user(self, ident, tenant):
        """The user `ident` (UPN or id) in the directory of `tenant`, as Graph resolves
        /users/{id} for an app-only token: only in the tenant the token was issued for."""
        for upn, user in self.config.get("users", {}).items():
            if ident.lower() in (upn.lower(), user.get("id", "").lower()):
                if (self.tenant_of(upn, user) or "").lower() != str(tenant).lower():
                    break
                return upn, user
        return None, None


def parse_json(body, content_type):
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise graph_error(415, "UnsupportedMediaType",
                          "A supported MIME type could not be found that matches the content type "
                          "of the response. None of the supported type(s) 'application/json' matches "
                          f"the content type '{content_type}'.")
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise graph_error(400, "BadRequest",
                          "Unable to read JSON request payload. Please ensure Content-Type header "
                          "is set and payload is of valid JSON format.")
    if not isinstance(value, dict):
        raise graph_error(400, "BadRequest", "The request body must be a JSON object.")
    return value


def check_string(obj, prop, required=False):
    if prop not in obj:
        if required:
            raise graph_error(400, "ErrorInvalidParameter", f"The property '{prop}' is required.")
        return None
    if not isinstance(obj[prop], str):
        raise bad_type(prop, "Edm.String")
    return obj[prop]


def check_recipient(value, prop):
    if not isinstance(value, dict) or set(value) != {"emailAddress"}:
        extra = next(iter(set(value) - {"emailAddress"}), "emailAddress") \
            if isinstance(value, dict) else prop
        raise bad_property(extra, "microsoft.graph.recipient")
    addr = value["emailAddress"]
    if not isinstance(addr, dict):
        raise bad_type(prop, "microsoft.graph.emailAddress")
    for key in addr:
        if key not in ("address", "name"):
            raise bad_property(key, "microsoft.graph.emailAddress")
    address = check_string(addr, "address")
    check_string(addr, "name")
    if not address or not ADDRESS.match(address):
        raise graph_error(400, "ErrorInvalidRecipients",
                          f"At least one recipient isn't valid., Recipient '{address}' is not "
                          "resolved. All recipients must be resolved before a message can be "
                          "submitted.")
    return address


def check_file_attachment(a):
    if not isinstance(a, dict):
        raise bad_type("attachments", "microsoft.graph.attachment")
    if a.get("@odata.type") != "#microsoft.graph.fileAttachment":
        raise graph_error(400, "RequestBodyRead",
                          "Cannot create an abstract class. A fileAttachment needs "
                          "\"@odata.type\": \"#microsoft.graph.fileAttachment\".")
    for key in a:
        if key not in ("@odata.type", "name", "contentType", "contentBytes", "isInline",
                       "contentId"):
            raise bad_property(key, "microsoft.graph.fileAttachment")
    name = check_string(a, "name", required=True)
    check_string(a, "contentType")
    check_string(a, "contentId")
    if "isInline" in a and not isinstance(a["isInline"], bool):
        raise bad_type("isInline", "Edm.Boolean")
    text = check_string(a, "contentBytes", required=True)
    if len(text) % 4 or not B64.match(text):
        raise graph_error(400, "RequestBodyRead",
                          "Cannot convert the literal for 'contentBytes' to the expected type "
                          "'Edm.Binary'.")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise graph_error(400, "RequestBodyRead",
                          "Cannot convert the literal for 'contentBytes' to the expected type "
                          "'Edm.Binary'.")
    return {"name": name, "contentType": a.get("contentType"), "data": data}


MESSAGE_STRINGS = ("subject", "internetMessageId", "importance", "inferenceClassification")
RECIPIENT_LISTS = ("toRecipients", "ccRecipients", "bccRecipients", "replyTo")


def check_message(m, allow_attachments):
    """The message resource as a client may write it; returns its attachments, decoded."""
    if not isinstance(m, dict):
        raise bad_type("message", "microsoft.graph.message")
    for key, value in m.items():
        if key in MESSAGE_STRINGS:
            check_string(m, key)
        elif key in RECIPIENT_LISTS:
            if not isinstance(value, list):
                raise bad_type(key, "Collection(microsoft.graph.recipient)")
            for r in value:
                check_recipient(r, key)
        elif key in ("from", "sender"):
            check_recipient(value, key)
        elif key == "body":
            if not isinstance(value, dict):
                raise bad_type("body", "microsoft.graph.itemBody")
            for k in value:
                if k not in ("contentType", "content"):
                    raise bad_property(k, "microsoft.graph.itemBody")
            kind = check_string(value, "contentType")
            if kind is not None and kind.lower() not in ("text", "html"):
                raise graph_error(400, "RequestBodyRead",
                                  f"Cannot convert the literal '{kind}' to the expected type "
                                  "'microsoft.graph.bodyType'.")
            check_string(value, "content")
        elif key in ("isDeliveryReceiptRequested", "isReadReceiptRequested"):
            if not isinstance(value, bool):
                raise bad_type(key, "Edm.Boolean")
        elif key == "attachments" and allow_attachments:
            if not isinstance(value, list):
                raise bad_type(key, "Collection(microsoft.graph.attachment)")
        else:
            raise bad_property(key, "microsoft.graph.message")
    if "internetMessageId" in m and not MESSAGE_ID.match(m["internetMessageId"]):
        raise graph_error(400, "ErrorInvalidInternetMessageHeader",
                          "The internet message id must be enclosed in angle brackets and contain "
                          "an @.")
    if "importance" in m and m["importance"].lower() not in ("low", "normal", "high"):
        raise bad_type("importance", "microsoft.graph.importance")
    return [check_file_attachment(a) for a in m.get("attachments", [])]


def recipients_of(m):
    return [r["emailAddress"]["address"] for key in ("toRecipients", "ccRecipients",
                                                      "bccRecipients") for r in m.get(key, [])]


def check_sendable(state, upn, user, m):
    if not recipients_of(m):
        raise graph_error(400, "ErrorInvalidRecipients",
                          "At least one recipient is not valid., A message can't be sent because "
                          "it contains no recipients.")
    sender = m.get("from") or m.get("sender")
    if sender:
        address = sender["emailAddress"]["address"].lower()
        own = {upn.lower(), user.get("mail", "").lower()}
        allowed = own | {a.lower() for a in user.get("send_as", [])}
        if address not in allowed:
            raise graph_error(403, "ErrorSendAsDenied",
                              "The user account which was used to submit this request does not "
                              "have the right to send mail on behalf of the specified sending "
                              "account., Cannot submit message.")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers go out at once. http.server sends the headers and the body separately; with Nagle's
    # algorithm the body then waits for the client's delayed ACK (about 40 ms a request on
    # Linux), a latency Graph does not have, which would hide the client's own cost in timings.
    disable_nagle_algorithm = True
    server_version = "graph-stand-in"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    # --- plumbing ------------------------------------------------------------------------------

    def respond(self, status, body=None, headers=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("request-id", str(uuid.uuid4()))
        self.send_header("client-request-id", str(uuid.uuid4()))
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        try:
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The client is gone; there is no one left to answer.
            self.close_connection = True

    def content_length(self):
        """The request's Content-Length as a number, None without one. Not one decimal number
        (negative, a sign, letters, too long) or given twice with different values is a 400:
        the body's end is then unknown, so the connection closes after the answer."""
        values = [v.strip() for v in self.headers.get_all("Content-Length") or []]
        if not values:
            return None
        if not all(LENGTH.fullmatch(v) for v in values) or len({int(v) for v in values}) > 1:
            self.close_connection = True
            raise graph_error(400, "BadRequest",
                              "Bad Request - Invalid Header. The Content-Length header must be "
                              "one non-negative decimal number.")
        return int(values[0])

    def read_body(self):
        n = self.content_length()
        if self.command in ("POST", "PUT", "PATCH") and n is None:
            self.close_connection = True
            raise graph_error(411, "LengthRequired", "Length Required")
        n = n or 0
        if n > MAX_REQUEST:
            # Read what was sent (bounded), so the client sees the answer, not a reset.
            left = min(n, 64 * MAX_REQUEST)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
            self.close_connection = True
            raise graph_error(413, "RequestEntityTooLarge",
                              "The maximum request length supported is 4MB.")
        return self.rfile.read(n) if n else b""

    def target(self):
        """The request target as a URL with a path ("/…"): not "*", nor a URL that does not
        parse."""
        try:
            url = urllib.parse.urlsplit(self.path)
        except ValueError:
            url = None
        if url is None or not url.path.startswith("/"):
            self.read_body()
            raise graph_error(400, "BadRequest", "Bad Request - Invalid URL.")
        return url

    def unexpected(self, origin, path):
        """The answer to a request that raised what no check expected: a 500 as the origin's
        service words it, never a dropped connection; the traceback goes to stderr."""
        self.close_connection = True
        sys.stderr.write(f"graph stand-in: unexpected error answering {origin} {self.command} "
                         f"{path}:\n{traceback.format_exc()}")
        sys.stderr.flush()
        if origin == "login":
            r = aad_error(500, "server_error", 50000,
                          "There was an error issuing a token or an issue with our sign-in "
                          "service.")
        else:
            r = graph_error(500, "generalException", "An unspecified error has occurred.")
        return r.status, r.body, r.headers

    def handle_any(self):
        state = self.server.state
        origin = self.server.origin
        path = self.path.split("?", 1)[0]
        op = "unknown"
        try:
            url = self.target()
            path = url.path
            if origin == "upload":
                op = "upload"
                status, body, headers = self.upload(state, url)
            elif origin == "login":
                op = "token"
                status, body, headers = self.login(state, url)
            else:
                op, status, body, headers = self.route(state, url)
        except Reply as r:
            status, body, headers = r.status, r.body, r.headers
        except Exception:
            status, body, headers = self.unexpected(origin, path)
        lost = state.lost_answer(op) if status < 300 else None
        if lost:
            state.record(origin, self.command, path, op, 0)
            self.close_connection = True
            if lost == "hang":
                while self.rfile.read1(1 << 16):
                    pass
            return
        state.record(origin, self.command, path, op, status)
        self.respond(status, body, headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

    # --- graph origin --------------------------------------------------------------------------

    def login(self, state, url):
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        body = self.read_body()
        if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
            raise Reply(404, {"error": "not_found", "error_description": "No such endpoint."})
        fault = state.fault("token")
        if fault:
            raise fault
        if self.command != "POST":
            raise aad_error(405, "invalid_request", 900561,
                            "The endpoint only accepts POST requests.")
        return self.token(state, parts[0], body)

    def route(self, state, url):
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if len(parts) < 3 or parts[0] != "v1.0" or parts[1] != "users":
            self.read_body()
            raise graph_error(400, "BadRequest", f"Resource not found for the segment '{parts[0]}'.")
        ident, rest = parts[2], parts[3:]
        ops = {
            ("GET", ()): "user",
            ("POST", ("sendMail",)): "sendMail",
            ("POST", ("messages",)): "createDraft",
        }
        key = (self.command, tuple(rest))
        if key in ops:
            op = ops[key]
        elif len(rest) == 2 and rest[0] == "messages" and self.command == "DELETE":
            op = "delete"
        elif len(rest) == 3 and rest[0] == "messages" and rest[2] == "send" and self.command == "POST":
            op = "send"
        elif len(rest) == 3 and rest[0] == "messages" and rest[2] == "attachments" and self.command == "POST":
            op = "addAttachment"
        elif (len(rest) == 4 and rest[0] == "messages" and rest[2:] == ["attachments",
                                                                       "createUploadSession"]
              and self.command == "POST"):
            op = "createUploadSession"
        else:
            self.read_body()
            raise graph_error(405 if rest in ([], ["sendMail"]) else 400, "BadRequest",
                              f"No HTTP resource was found that matches {self.command} {url.path}.")
        body = self.read_body()
        fault = state.fault(op)
        if fault:
            raise fault
        claims = state.check_token(self.headers.get("Authorization"))
        upn, user = state.user(ident, claims.get("tid"))
        if user is None:
            if op == "user":
                raise graph_error(404, "Request_ResourceNotFound",
                                  f"Resource '{ident}' does not exist or one of its queried "
                                  "reference-property objects are not present.")
            raise graph_error(404, "ErrorInvalidUser", f"The requested user '{ident}' is invalid.")
        roles = set(claims.get("roles", []))
        if op == "user":
            if "User.Read.All" not in roles:
                raise graph_error(403, "Authorization_RequestDenied",
                                  "Insufficient privileges to complete the operation.")
            select = urllib.parse.parse_qs(url.query).get("$select", [""])[0]
            fields = {"id": user["id"], "displayName": user.get("displayName"),
                      "mail": user.get("mail"), "userPrincipalName": upn}
            if select:
                wanted = select.split(",")
                unknown = [w for w in wanted if w not in fields]
                if unknown:
                    raise graph_error(400, "Request_BadRequest",
                                      f"Could not find a property named '{unknown[0]}' on type "
                                      "'Microsoft.DirectoryServices.User'.")
                fields = {k: fields[k] for k in wanted}
            fields["@odata.context"] = f"{state.graph_origin}/v1.0/$metadata#users/$entity"
            return op, 200, fields, {}
        if not user.get("mailbox", True):
            raise graph_error(404, "MailboxNotEnabledForRESTAPI",
                              "The mailbox is either inactive, soft-deleted, or is hosted on-premise.")
        needed = "Mail.Send" if op in ("sendMail", "send") else "Mail.ReadWrite"
        if needed not in roles:
            raise graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        handler = getattr(self, "op_" + op)
        status, reply, headers = handler(state, upn, user, rest, body)
        return op, status, reply, headers

    def token(self, state, tenant, body):
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise aad_error(400, "invalid_request", 900144,
                            "The request body must contain the following parameter: 'grant_type'.")
        try:
            fields = urllib.parse.parse_qs(body.decode("ascii"), keep_blank_values=True,
                                           strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            raise aad_error(400, "invalid_request", 9002313,
                            "Invalid request. Request is malformed or invalid.")
        if any(len(v) > 1 for v in fields.values()):
            raise aad_error(400, "invalid_request", 9002313,
                            "Invalid request. Request is malformed or invalid.")
        form = {k: v[0] for k, v in fields.items()}
        if not (GUID.match(tenant) or DOMAIN.match(tenant)):
            raise aad_error(400, "invalid_request", 900023,
                            f"Specified tenant identifier '{tenant}' is neither a valid DNS name, "
                            "nor a valid external domain.")
        tenants = state.config.get("tenants", {})
        tid = next((t for t, v in tenants.items()
                    if tenant.lower() in [t.lower()] + [d.lower() for d in v.get("domains", [])]),
                   None)
        if tid is None:
            raise aad_error(400, "invalid_tenant", 90002,
                            f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                            "tenant ID and are signing into the correct cloud.")
        for required in ("grant_type", "client_id", "scope"):
            if not form.get(required):
                raise aad_error(400, "invalid_request", 900144,
                                "The request body must contain the following parameter: "
                                f"'{required}'.")
        if form["grant_type"] != "client_credentials":
            raise aad_error(400, "unsupported_grant_type", 70003,
                            "The app requested an unsupported grant type "
                            f"'{form['grant_type']}'.")
        app = tenants[tid].get("apps", {}).get(form["client_id"].lower())
        if app is None:
            raise aad_error(400, "unauthorized_client", 700016,
                            f"Application with identifier '{form['client_id']}' was not found in "
                            f"the directory '{tenant}'. This can happen if the application has not "
                            "been installed by the administrator of the tenant.")
        if "client_secret" not in form:
            raise aad_error(401, "invalid_client", 7000218,
                            "The request body must contain the following parameter: "
                            "'client_assertion' or 'client_secret'.")
        if not hmac.compare_digest(form["client_secret"].encode(), app["secret"].encode()):
            raise aad_error(401, "invalid_client", 7000215,
                            "Invalid client secret provided. Ensure the secret being sent in the "
                            "request is the client secret value, not the client secret ID, for a "
                            f"secret added to app '{form['client_id']}'.")
        scope = form["scope"]
        if not scope.endswith("/.default") or " " in scope:
            raise aad_error(400, "invalid_scope", 1002012,
                            f"The provided value for scope {scope} is not valid. Client credential "
                            "flows must have a scope value with /.default suffixed to the resource "
                            "identifier (application ID URI).")
        if scope != f"{state.graph_origin}/.default":
            raise aad_error(400, "invalid_resource", 500011,
                            f"The resource principal named {scope[:-len('/.default')]} was not "
                            f"found in the tenant named {tenant}.")
        token, lifetime = state.issue(tid, form["client_id"], app.get("roles", []))
        return 200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                     "access_token": token}, {"Cache-Control": "no-store, no-cache"}

    def op_sendMail(self, state, upn, user, rest, body):
        request = parse_json(body, self.headers.get("Content-Type"))
        for key in request:
            if key not in ("message", "saveToSentItems"):
                raise graph_error(400, "UnableToDeserializePostBody",
                                  f"were unable to deserialize: unknown parameter '{key}'.")
        if "message" not in request:
            raise graph_error(400, "ErrorInvalidParameter", "The property 'message' is required.")
        if "saveToSentItems" in request and not isinstance(request["saveToSentItems"], bool):
            raise bad_type("saveToSentItems", "Edm.Boolean")
        attachments = check_message(request["message"], allow_attachments=True)
        check_sendable(state, upn, user, request["message"])
        self.store(state, upn, "sendMail", request["message"],
                   [dict(a, how="inline") for a in attachments])
        return 202, None, {}

    def op_createDraft(self, state, upn, user, rest, body):
        m = parse_json(body, self.headers.get("Content-Type"))
        attachments = check_message(m, allow_attachments=True)
        mid = b64url(secrets.token_bytes(24)) + "="
        with state.lock:
            state.drafts[mid] = {"user": upn, "message": m,
                                 "attachments": [dict(a, how="posted") for a in attachments]}
        reply = dict(m)
        reply.pop("attachments", None)
        reply.update({"@odata.context": f"{state.graph_origin}/v1.0/$metadata#users('{upn}')/messages/$entity",
                      "id": mid, "isDraft": True, "hasAttachments": bool(attachments)})
        return 201, reply, {}

    def draft(self, state, upn, mid):
        with state.lock:
            d = state.drafts.get(mid)
        if d is None or d["user"] != upn:
            raise graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return d

    def op_addAttachment(self, state, upn, user, rest, body):
        d = self.draft(state, upn, rest[1])
        a = check_file_attachment(parse_json(body, self.headers.get("Content-Type")))
        with state.lock:
            d["attachments"].append(dict(a, how="posted"))
        aid = b64url(secrets.token_bytes(16))
        return 201, {"@odata.type": "#microsoft.graph.fileAttachment", "id": aid,
                     "name": a["name"], "contentType": a["contentType"],
                     "size": len(a["data"]), "isInline": False}, {}

    def op_createUploadSession(self, state, upn, user, rest, body):
        mid = rest[1]
        self.draft(state, upn, mid)
        request = parse_json(body, self.headers.get("Content-Type"))
        if set(request) != {"AttachmentItem"}:
            extra = next(iter(set(request) - {"AttachmentItem"}), "AttachmentItem")
            raise graph_error(400, "RequestBodyRead",
                              f"The parameter '{extra}' in the request payload is not a valid "
                              "parameter for the operation 'createUploadSession'.")
        item = request["AttachmentItem"]
        if not isinstance(item, dict):
            raise bad_type("AttachmentItem", "microsoft.graph.attachmentItem")
        for key in item:
            if key not in ("attachmentType", "name", "size", "contentType", "isInline", "contentId"):
                raise bad_property(key, "microsoft.graph.attachmentItem")
        if item.get("attachmentType") not in ("file", None):
            raise graph_error(400, "ErrorInvalidParameter",
                              "Only attachmentType 'file' can be uploaded in a session.")
        check_string(item, "name", required=True)
        check_string(item, "contentType")
        size = item.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise bad_type("size", "Edm.Int64")
        if size < UPLOAD_MIN:
            raise graph_error(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                              "Attachment size must be greater than the minimum size.")
        if size > UPLOAD_MAX:
            raise graph_error(400, "ErrorAttachmentSizeExceedsMaximum",
                              "The attachment size exceeds the maximum allowed size of 150 MB.")
        sid = b64url(secrets.token_bytes(18))
        token = b64url(secrets.token_bytes(24))
        state.note_issued(token)
        expires = (datetime.datetime.now(datetime.timezone.utc)
                   + datetime.timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with state.lock:
            state.sessions[sid] = {"mid": mid, "user": upn, "item": item, "token": token,
                                   "next": 0, "data": bytearray(), "expires": expires,
                                   "done": False}
        upload_url = (f"{state.upload_origin}/api/v2.0/Users('{urllib.parse.quote(user['id'])}')"
                      f"/Messages('{urllib.parse.quote(mid)}')/AttachmentSessions('{sid}')"
                      f"?authtoken={token}")
        return 201, {"@odata.context": f"{state.graph_origin}/v1.0/$metadata#microsoft.graph.uploadSession",
                     "uploadUrl": upload_url, "expirationDateTime": expires,
                     "nextExpectedRanges": ["0-"]}, {}

    def op_send(self, state, upn, user, rest, body):
        d = self.draft(state, upn, rest[1])
        if body:
            raise graph_error(400, "UnableToDeserializePostBody",
                              "were unable to deserialize: send takes no body.")
        with state.lock:
            pending = [s for s in state.sessions.values() if s["mid"] == rest[1] and not s["done"]]
        if pending:
            raise graph_error(400, "ErrorInvalidRequest",
                              "An upload session of this message is not complete.")
        check_sendable(state, upn, user, d["message"])
        self.store(state, upn, "draft", d["message"], d["attachments"])
        with state.lock:
            state.drafts.pop(rest[1], None)
        return 202, None, {}

    def op_delete(self, state, upn, user, rest, body):
        self.draft(state, upn, rest[1])
        with state.lock:
            state.drafts.pop(rest[1], None)
        return 204, None, {}

    def store(self, state, upn, via, message, attachments):
        with state.lock:
            state.sent_count += 1
            n = state.sent_count
        folder = os.path.join(state.dir, "sent")
        listed = []
        for k, a in enumerate(attachments):
            name = f"{n:04d}-{k}.bin"
            with open(os.path.join(folder, name), "wb") as f:
                f.write(a["data"])
            listed.append({"name": a["name"], "contentType": a["contentType"],
                           "size": len(a["data"]), "file": name, "how": a["how"]})
        record = dict(message)
        record["attachments"] = listed
        tmp = os.path.join(folder, f"{n:04d}.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"user": upn, "via": via, "message": record}, f, ensure_ascii=False)
        os.replace(tmp, os.path.join(folder, f"{n:04d}.json"))

    # --- upload origin -------------------------------------------------------------------------

    def upload(self, state, url):
        match = re.fullmatch(r"/api/v2\.0/Users\('[^']+'\)/Messages\('[^']+'\)/AttachmentSessions\('([^']+)'\)",
                             urllib.parse.unquote(url.path))
        if self.command != "PUT" or not match:
            self.read_body()
            raise graph_error(404 if not match else 405, "ErrorInvalidRequest",
                              "The upload URL takes PUT requests only.")
        length = self.headers.get("Content-Length")
        body = self.read_body()
        fault = state.fault("upload")
        if fault:
            raise fault
        with state.lock:
            session = state.sessions.get(match.group(1))
        query = urllib.parse.parse_qs(url.query)
        if session is None or query.get("authtoken", [""])[0] != session["token"]:
            raise graph_error(401, "InvalidAuthenticationToken", "The upload URL's authtoken is not valid.")
        if self.headers.get("Authorization") is not None:
            raise graph_error(400, "ErrorInvalidRequest",
                              "Do not send an Authorization header with a pre-authenticated upload URL.")
        if (self.headers.get("Content-Type") or "").strip().lower() != "application/octet-stream":
            raise graph_error(400, "ErrorInvalidRequest",
                              "Content-Type must be application/octet-stream.")
        size = session["item"]["size"]
        range_match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", self.headers.get("Content-Range") or "")
        if not range_match:
            raise graph_error(400, "ErrorInvalidRequest",
                              "Content-Range must be 'bytes {start}-{end}/{total}'.")
        start, end, total = (int(g) for g in range_match.groups())
        if (total != size or start != session["next"] or end < start or end >= total
                or end - start + 1 != int(length) or len(body) != int(length)):
            raise Reply(416, {"error": {"code": "ErrorInvalidRange",
                                        "message": "The Content-Range does not match the upload session.",
                                        "nextExpectedRanges": [f"{session['next']}-"]}})
        with state.lock:
            session["data"].extend(body)
            session["next"] = end + 1
            finished = session["next"] == size
            if finished:
                session["done"] = True
                draft = state.drafts.get(session["mid"])
                if draft is not None:
                    draft["attachments"].append({"name": session["item"]["name"],
                                                 "contentType": session["item"].get("contentType"),
                                                 "data": bytes(session["data"]), "how": "uploaded"})
                # The bytes now live in the draft (and in sent/ once sent); a finished session
                # takes no more ranges (its next expected byte is its size), so they can go.
                session["data"] = bytearray()
        if finished:
            location = (f"{state.upload_origin}/api/v2.0/Users('{session['user']}')/Messages("
                        f"'{session['mid']}')/Attachments('{b64url(secrets.token_bytes(12))}')")
            return 201, None, {"Location": location}
        return 200, {"@odata.context": f"{state.upload_origin}/api/v2.0/$metadata#Users/Messages/AttachmentSessions/$entity",
                     "ExpirationDateTime": session["expires"],
                     "nextExpectedRanges": [f"{session['next']}"]}, {}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False


def serve(origin, context):
    server = Server((HOST, 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.origin = origin
    return server


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--config", required=True)
    args = p.parse_args()
    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    # Application ids compare without case, as Entra ID's do.
    for tenant in config.get("tenants", {}).values():
        tenant["apps"] = {k.lower(): v for k, v in tenant.get("apps", {}).items()}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    login = serve("login", context)
    graph = serve("graph", context)
    upload = serve("upload", context)
    state = State(args.dir, config, f"https://{HOST}:{graph.server_address[1]}",
                  f"https://{HOST}:{upload.server_address[1]}")
    servers = (login, graph, upload)
    for server in servers:
        server.state = state
        threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("READY " + " ".join(str(s.server_address[1]) for s in servers), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
