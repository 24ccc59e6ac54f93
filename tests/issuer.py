#!/usr/bin/env python3
"""issuer.py: an OAuth2 token issuer for tokend's tests and demo.

Python 3 standard library only.  HTTPS with keep-alive (HTTP/1.1).

    issuer.py --cert PEM --key KEY [--host 127.0.0.1] [--port 0]
              [--port-file FILE] [--config JSON_FILE] [--quiet]

Serves until SIGTERM or SIGINT, then exits 0.  Once listening it writes the
bound port to --port-file (atomically) and prints "listening on HOST:PORT".

Configuration (the --config file, and POST /_ctl/settings at run time):
    clients          {"id": "secret"}; "" or null: a public client.  When no
                     clients are configured at all, any client is accepted.
    users            {"name": "password"}; when none are configured, any
                     username/password is accepted.
    client_lifetimes {"id": seconds}: a lifetime for one client
    lifetime         seconds (default 3600)
    refresh_tokens   issue refresh tokens for password/refresh grants (true)
    rotate           a refresh returns a new refresh token, the old one dies (true)
    expires_in_as_string  send "3600" instead of 3600 (false)
    omit_expires_in  leave expires_in out (false)
    jwt              access tokens are unsigned JWTs carrying "exp" (false)
    token_type       token_type to send (default "Bearer"; Spotinst: "bearer")
  Dialects of servers that do not say things as RFC 6749 does:
    basic_decode     percent-decode the halves of a Basic pair (true); false:
                     split at the first ':' and take both halves as they are
                     (authlib 1.2, glewlwyd)
    refuse_empty_403 a wrong client secret or password gets 403 with an empty
                     body, not 401/400 with an OAuth error (false; glewlwyd)
    dead_refresh     how an unknown, revoked or used refresh token is refused:
                     "invalid_grant" (default), "empty_400" (glewlwyd) or
                     "invalid_request" (LemonLDAP::NG)
  Discovery (the issuer identifier is https://HOST:PORT, or that with a
  path: /.well-known/openid-configuration may follow any path, and RFC
  8414's /.well-known/oauth-authorization-server be followed by one):
    discovery_issuer       what the document says "issuer" is (null: the
                           issuer the URL names; a string: a mix-up)
    discovery_oidc         serve /.well-known/openid-configuration (true);
                           false: 404 there, RFC 8414 metadata only
    discovery_auth_methods token_endpoint_auth_methods_supported (null: left
                           out, which RFC 8414 reads as client_secret_basic)
    discovery_extra        more members for the document ({})

    device_expires_in  seconds a device code lives (600)
    device_interval  the interval the device answer gives (1); null: none
    path_aliases     {"/oauth/token": "/token"}: serve a path under another
                     name (a provider's own URL; faults and the log use the
                     name it stands for) ({})
    authorize        what GET /authorize does: "approve" (default), "deny"
                     (error=access_denied), "wrong_state" (a code, with
                     another state)
  Signed assertions (verified with the openssl command, not with tokend's
  code; the JWT goes into /_ctl/secrets, its header and claims into the log):
    service_accounts {"EMAIL": {"key": PUBLIC_PEM_PATH, "kid": KID,
                     "alg": "RS256" (default; also PS256, ES256, EdDSA),
                     "scope": "what the claim must say" (optional)}}: who
                     may use /google/token.  The assertion must carry alg,
                     kid, iss = EMAIL, a non-empty scope, aud = the URL of
                     /google/token, iat not ahead of the server's clock by
                     more than "clock_leeway", exp after now and exp - iat
                     <= 3600.  Refusals: 400 invalid_grant.
    github_apps      {"APP_ID": {"key": PUBLIC_PEM_PATH, "client_id": ID}}:
                     RS256 only; iss = APP_ID or the client id; iat not
                     ahead by more than "clock_leeway"; exp after now and
                     at most 600 s ahead.  Refusals: 401 {"message",
                     "documentation_url"}, as GitHub says them.
    github_lifetime  seconds an installation token lives (3600)
    clock_skew       seconds added to the server's clock for the assertion
                     checks and the Date header of every answer (0): a
                     server whose clock is off, with the machine's clock
                     untouched
    clock_leeway     seconds an iat may be ahead of the server's clock (10)
    date_header      the Date header of every answer, verbatim (null: the
                     server's clock; "": no Date header at all)

Token endpoints (application/x-www-form-urlencoded POSTs):
    POST /token              RFC 6749: client_credentials | password | refresh_token
                             | authorization_code (PKCE S256 required) |
                             urn:ietf:params:oauth:grant-type:device_code
    POST /device_authorization  RFC 8628 3.1
    GET  /authorize          RFC 6749 4.1.1: redirects at once (no human) to
                             the loopback redirect_uri, as "authorize" says
    POST /spotinst/token     password grant only, Spotinst envelope
    POST /spotinst/refresh   refresh_token grant only, Spotinst envelope
    POST /revoke             RFC 7009 revocation (client auth as at /token);
                             recorded in GET /_ctl/revocations
    POST /google/token       Google-style service-account token endpoint:
                             grant_type=urn:ietf:params:oauth:grant-type:
                             jwt-bearer&assertion=JWT (RFC 7523 2.1), see
                             "service_accounts" below
    POST /app/installations/ID/access_tokens
                             GitHub-style App installation token: the app's
                             JWT as "Authorization: Bearer JWT", an empty
                             body; answers 201 {"token": "ghs_...",
                             "expires_at": RFC 3339 UTC}; see "github_apps"
    GET  .../.well-known/openid-configuration, /.well-known/oauth-
         authorization-server[/PATH]: metadata naming the endpoints above
         (faults queue under the path "/.well-known")

Control API (JSON in and out):
    POST /_ctl/settings      merge into the settings (dicts are merged key by key)
    POST /_ctl/faults        {"path": "/token", "faults": [F, ...]}: appended to
                             that path's FIFO (with "replace": true, instead of
                             what is queued); each request to the path takes one
    GET  /_ctl/faults        what is still queued
    GET  /_ctl/log           every token request (see TokenLog below)
    POST /_ctl/reset_log
    GET  /_ctl/secrets       every secret known or issued
    POST /_ctl/revoke        {"refresh_token": "..."} or {"all_refresh_tokens": true}
    POST /_ctl/device        {"user_code": "...", "action": "approve" | "deny"}
    GET  /_ctl/devices       the device codes issued, by user code
    POST /_ctl/issue_refresh {"client_id": ..., "scope": ...}: a live refresh
                             token, as if a human had logged in; {"refresh_token"}
    GET  /_ctl/revocations   every POST /revoke: {token, token_type_hint,
                             client_id, auth, status, was_alive}
    GET  /_ctl/discovery_log the path of every metadata GET, in order
    GET  /_ctl/alive?token=T {"alive": bool}: the refresh token is usable

A fault F is one of:
    {"status": N, "retry_after": "5", "body": "raw", "json": {...},
     "content_type": "...", "headers": {"Name": "value"}}
                             answer with that status (body, Retry-After and
                             other headers optional); the request is not
                             processed
    {"hang": SECONDS}        read the request, answer nothing, close after SECONDS
    {"close_after_request": true}
                             process the request normally (a refresh token
                             rotates!) but close the connection unanswered
    {"drip": SECONDS}        process normally, send the answer one byte every
                             SECONDS seconds ("status" optional, default 200)
    {"delay": SECONDS}       process normally (the token is issued, a refresh
                             token rotates), send the whole answer SECONDS
                             seconds later: a request in flight that long
                             (with "status", it is ignored here: a status
                             fault is answered as it is)
    {"huge": BYTES}          a 200, chunked, with a JSON body of BYTES bytes
                             (a plausible token response, padded)
"""

import argparse
import base64
import binascii
import collections
import hashlib
import hmac
import http.server
import json
import os
import secrets as rnd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from email.utils import formatdate

MAX_BODY = 64 * 1024          # token request bodies above this get a 413
DRAIN_MAX = 16 * 1024 * 1024  # an oversized body up to this is read first
TOKEN_PATHS = ("/token", "/spotinst/token", "/spotinst/refresh",
               "/device_authorization")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_PATH = "/google/token"
GITHUB_PATH = re.compile(r"^/app/installations/([0-9]+)/access_tokens$")
GITHUB_DOCS = "https://docs.github.com/rest/apps/apps" \
    "#create-an-installation-access-token-for-an-app"
MAX_GITHUB_JWT = 600          # seconds an app JWT may reach into the future
MAX_GOOGLE_JWT = 3600

DEFAULT_SETTINGS = {
    "clients": None,
    "users": None,
    "client_lifetimes": {},
    "lifetime": 3600,
    "refresh_tokens": True,
    "rotate": True,
    "expires_in_as_string": False,
    "omit_expires_in": False,
    "jwt": False,
    "token_type": None,
    "basic_decode": True,
    "refuse_empty_403": False,
    "dead_refresh": "invalid_grant",
    "device_expires_in": 600,
    "device_interval": 1,
    "authorize": "approve",
    "path_aliases": {},
    "discovery_issuer": None,
    "discovery_oidc": True,
    "discovery_auth_methods": None,
    "discovery_extra": {},
    "service_accounts": {},
    "github_apps": {},
    "github_lifetime": 3600,
    "clock_skew": 0,
    "clock_leeway": 10,
    "date_header": None,
}
DICT_SETTINGS = ("clients", "users", "client_lifetimes", "discovery_extra",
                 "service_accounts", "github_apps")
OIDC_WELL_KNOWN = "/.well-known/openid-configuration"
RFC8414_WELL_KNOWN = "/.well-known/oauth-authorization-server"


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer."""

    def __init__(self, status, error, description=None, refusal=None):
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description
        self.refusal = refusal     # "credentials" | "refresh_token" | None


def dialect_answer(cfg, err, path):
    """(status, body, content type) for an error, in the configured dialect."""
    if err.refusal == "credentials" and cfg.get("refuse_empty_403"):
        return 403, b"", "text/plain"
    if err.refusal == "refresh_token":
        style = cfg.get("dead_refresh") or "invalid_grant"
        if style == "empty_400":
            return 400, b"", "text/plain"
        if style == "invalid_request":
            return 400, json.dumps({"error": "invalid_request"}), \
                "application/json"
    return err.status, json.dumps(error_body(path, err)), "application/json"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class State:
    """Everything the issuer knows; one lock guards all of it."""

    def __init__(self, settings):
        self.lock = threading.Lock()
        self.settings = dict(DEFAULT_SETTINGS)
        self.merge_settings(settings or {})
        self.counter = 0
        # refresh token -> {"client_id", "username", "scope", "alive"}
        self.refresh_tokens = {}
        self.issued_access = []
        self.extra_secrets = []   # e.g. tokens inside "huge" bodies
        self.faults = collections.defaultdict(collections.deque)
        self.log = []
        # user code -> {"device_code", "client_id", "scope", "status",
        # "expires_at"}; status: pending | approved | denied | used
        self.devices = {}
        # authorization code -> {"client_id", "redirect_uri", "challenge",
        # "scope"}
        self.codes = {}
        self.revocations = []
        self.discovery_log = []

    def merge_settings(self, new):
        """Merge new settings in; caller holds the lock (or is __init__)."""
        for key, value in new.items():
            if key not in DEFAULT_SETTINGS:
                raise ValueError("unknown setting %r" % key)
            if key in DICT_SETTINGS and value is not None:
                if not isinstance(value, dict):
                    raise ValueError("%s must be an object" % key)
                merged = dict(self.settings.get(key) or {})
                merged.update(value)
                self.settings[key] = merged
            else:
                self.settings[key] = value

    def next_token(self, prefix):
        self.counter += 1
        return "%s-%d-%s" % (prefix, self.counter, rnd.token_hex(8))

    def secrets(self):
        out = []
        for secret in (self.settings.get("clients") or {}).values():
            if secret:
                out.append(secret)
        for password in (self.settings.get("users") or {}).values():
            if password:
                out.append(password)
        out.extend(self.issued_access)
        out.extend(self.refresh_tokens)
        out.extend(self.extra_secrets)
        out.extend(d["device_code"] for d in self.devices.values())
        out.extend(self.codes)
        return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive
    # TCP_NODELAY: without it every answer on a reused connection waits
    # ~40 ms for Nagle and delayed ACKs (83 requests/s instead of 720)
    disable_nagle_algorithm = True
    server_version = "tokend-test-issuer/1"
    timeout = 120                     # an idle keep-alive connection

    # -- plumbing ---------------------------------------------------------

    def setup(self):
        # The TLS handshake happens here, in this connection's own thread,
        # so a client that stalls in the handshake cannot block accept().
        self.request.settimeout(self.timeout)
        self.request = self.server.ssl_context.wrap_socket(
            self.request, server_side=True)
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            try:
                self.request.close()
            except OSError:
                pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            pass    # the client went away; nothing to tell anyone

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            sys.stderr.write("issuer: %s %s\n" % (self.address_string(),
                                                  fmt % args))

    @property
    def state(self):
        return self.server.state

    def now(self):
        """The server's clock: the machine's, plus the clock_skew setting
        (read without the lock: send_response may run under it)."""
        return time.time() + float(self.state.settings["clock_skew"])

    def date_time_string(self, timestamp=None):
        # the Date header tells the server's (maybe skewed) clock
        return formatdate(self.now() if timestamp is None else timestamp,
                          usegmt=True)

    def send_response(self, code, message=None):
        # BaseHTTPRequestHandler's, with the Date header as date_header says
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())
        date = self.state.settings.get("date_header")
        if date is None:
            date = self.date_time_string()
        if date != "":
            self.send_header("Date", date)

    def send_body(self, status, body, content_type="application/json",
                  headers=None, close=False):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status, obj, headers=None, close=False):
        self.send_body(status, json.dumps(obj), headers=headers, close=close)

    def reject_too_large(self):
        self.send_json(413, {"error": "invalid_request",
                             "error_description": "body over %d bytes" % MAX_BODY},
                       close=True)

    def handle_expect_100(self):
        # Refuse an announced oversized body before the client sends it.
        if int(self.headers.get("Content-Length") or 0) > MAX_BODY:
            self.reject_too_large()
            return False
        return super().handle_expect_100()

    def read_body(self):
        """The request body, or None after a 413 (the connection closes).
        An oversized body is read and thrown away (up to DRAIN_MAX) before
        the 413, so the client is not cut off while sending and sees it."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > DRAIN_MAX:
                    break
                data = self.rfile.read(size)
                if total <= MAX_BODY:
                    chunks.append(data)
                self.rfile.readline(1024)
            if total > MAX_BODY:
                self.reject_too_large()
                return None
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            left = length if length <= DRAIN_MAX else 0
            while left > 0:
                data = self.rfile.read(min(left, 65536))
                if not data:
                    break
                left -= len(data)
            self.reject_too_large()
            return None
        return self.rfile.read(length) if length > 0 else b""

    # -- dispatch ---------------------------------------------------------

    def aliased(self, path):
        with self.state.lock:
            return self.state.settings.get("path_aliases", {}).get(path, path)

    def do_GET(self):
        split = urllib.parse.urlsplit(self.path)
        path = self.aliased(split.path)
        st = self.state
        if OIDC_WELL_KNOWN in path or path.startswith(RFC8414_WELL_KNOWN):
            self.metadata(path)
            return
        with st.lock:
            if path == "/_ctl/revocations":
                out = list(st.revocations)
            elif path == "/_ctl/discovery_log":
                out = list(st.discovery_log)
            elif path == "/_ctl/alive":
                token = dict(urllib.parse.parse_qsl(split.query)).get("token")
                info = st.refresh_tokens.get(token)
                out = {"alive": bool(info and info["alive"])}
            elif path == "/_ctl/log":
                out = list(st.log)
            elif path == "/_ctl/secrets":
                out = st.secrets()
            elif path == "/_ctl/settings":
                out = dict(st.settings)
            elif path == "/_ctl/faults":
                out = {p: list(q) for p, q in st.faults.items() if q}
            elif path == "/_ctl/devices":
                out = {k: dict(v) for k, v in st.devices.items()}
            elif path == "/authorize":
                out = self.authorize()
                if isinstance(out, str):
                    self.send_response(302)
                    self.send_header("Location", out)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            else:
                out = None
        if out is None:
            self.send_json(404, {"error": "not_found"})
        else:
            self.send_json(200, out)

    def authorize(self):
        """RFC 6749 4.1.1 without a human: the redirect's Location, or an
        error object.  Caller holds the lock."""
        st = self.state
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query,
                                        keep_blank_values=True))
        st.log.append({"t": time.time(), "path": "/authorize", "params": q,
                       "grant_type": None, "status": 302})
        redirect = q.get("redirect_uri", "")
        if not (redirect.startswith("http://127.0.0.1:") or
                redirect.startswith("http://[::1]:")):
            return {"error": "invalid_request",
                    "error_description": "redirect_uri is not loopback"}
        clients = st.settings.get("clients")
        if clients is not None and q.get("client_id") not in clients:
            return {"error": "invalid_client"}
        if q.get("response_type") != "code" or \
                q.get("code_challenge_method") != "S256" or \
                not q.get("code_challenge") or not q.get("state"):
            return {"error": "invalid_request",
                    "error_description": "code, S256 and state required"}
        action = st.settings.get("authorize", "approve")
        state = q["state"]
        if action == "deny":
            args = {"error": "access_denied",
                    "error_description": "the user said no", "state": state}
        else:
            code = st.next_token("code")
            st.codes[code] = {"client_id": q.get("client_id"),
                              "redirect_uri": redirect,
                              "challenge": q["code_challenge"],
                              "scope": q.get("scope")}
            if action == "wrong_state":
                state = "not-" + state
            args = {"code": code, "state": state}
        return redirect + ("&" if "?" in redirect else "?") + \
            urllib.parse.urlencode(args)

    def do_POST(self):
        path = self.aliased(urllib.parse.urlsplit(self.path).path)
        body = self.read_body()
        if body is None:
            return
        if path.startswith("/_ctl/"):
            self.control(path, body)
        elif path == "/revoke":
            self.revoke(body)
        elif path in TOKEN_PATHS:
            self.token_request(path, body)
        elif path == GOOGLE_PATH:
            self.google_token(body)
        elif GITHUB_PATH.match(path):
            self.github_token(path, body)
        else:
            self.send_json(404, {"error": "not_found"})

    # -- control API ------------------------------------------------------

    def control(self, path, body):
        st = self.state
        try:
            args = json.loads(body or b"{}")
            if not isinstance(args, dict):
                raise ValueError("expected a JSON object")
            with st.lock:
                if path == "/_ctl/settings":
                    st.merge_settings(args)
                    out = dict(st.settings)
                elif path == "/_ctl/faults":
                    faults = args.get("faults")
                    if not isinstance(args.get("path"), str) or \
                            not isinstance(faults, list) or \
                            not all(isinstance(f, dict) for f in faults):
                        raise ValueError("want {path, faults: [{...}]}")
                    if args.get("replace"):
                        st.faults[args["path"]].clear()
                    st.faults[args["path"]].extend(faults)
                    out = {"queued": len(st.faults[args["path"]])}
                elif path == "/_ctl/revoke":
                    n = 0
                    if args.get("all_refresh_tokens"):
                        for info in st.refresh_tokens.values():
                            n += info["alive"]
                            info["alive"] = False
                    if "refresh_token" in args:
                        info = st.refresh_tokens.get(args["refresh_token"])
                        if info and info["alive"]:
                            info["alive"] = False
                            n += 1
                    out = {"revoked": n}
                elif path == "/_ctl/issue_refresh":
                    refresh = st.next_token("rt")
                    st.refresh_tokens[refresh] = {
                        "client_id": args.get("client_id"),
                        "username": args.get("username", "human"),
                        "scope": args.get("scope"), "alive": True}
                    out = {"refresh_token": refresh}
                elif path == "/_ctl/reset_log":
                    st.log.clear()
                    out = {}
                elif path == "/_ctl/device":
                    dev = st.devices.get(args.get("user_code"))
                    if dev is None or args.get("action") not in \
                            ("approve", "deny"):
                        raise ValueError("want {user_code, action}")
                    dev["status"] = {"approve": "approved",
                                     "deny": "denied"}[args["action"]]
                    out = dict(dev)
                else:
                    out = None
        except ValueError as e:
            self.send_json(400, {"error": str(e)})
            return
        if out is None:
            self.send_json(404, {"error": "not_found"})
        else:
            self.send_json(200, out)

    # -- token endpoints --------------------------------------------------

    def token_request(self, path, body):
        st = self.state
        now = time.time()
        form, form_error = parse_form(self.headers.get("Content-Type", ""), body)
        entry = {
            "t": now,
            "path": path,
            "grant_type": form.get("grant_type"),
            "client_id": None,
            "auth": "none",
            "refresh_token_used": form.get("refresh_token"),
            "params": {k: v for k, v in form.items()
                       if k not in ("client_secret", "password")},
            "status": None,
            "fault": None,
            "issued_access_token": None,
            "issued_refresh_token": None,
        }
        with st.lock:
            queue = st.faults.get(path)
            fault = queue.popleft() if queue else None
            entry["fault"] = fault
            st.log.append(entry)
            # Which client is talking, as far as we can tell, for the log.
            try:
                entry["client_id"], entry["auth"], _ = client_credentials(
                    self.headers.get("Authorization"), form,
                    st.settings.get("basic_decode", True))
            except OAuthError:
                pass

            processed = fault is None or "close_after_request" in fault \
                or "drip" in fault or delayed(fault)
            if processed:
                try:
                    if form_error:
                        raise OAuthError(400, "invalid_request", form_error)
                    status, answer = self.grant(path, form, now, entry)
                    content_type = "application/json"
                    answer = json.dumps(answer)
                except OAuthError as e:
                    status, answer, content_type = dialect_answer(
                        st.settings, e, path)
                entry["status"] = status
            elif "status" in fault:
                entry["status"] = fault["status"]
            elif "huge" in fault:
                entry["status"] = 200
                huge_token = st.next_token("huge")
                st.extra_secrets.append(huge_token)

        if processed and fault is None:
            headers = {}
            if status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="tokend-test"'
            self.send_body(status, answer, content_type, headers=headers)
        elif processed and "close_after_request" in fault:
            # The issuer did the work; the client never hears of it.
            self.close_connection = True
        elif processed and delayed(fault):
            time.sleep(float(fault["delay"]))
            headers = {}
            if status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="tokend-test"'
            self.send_body(status, answer, content_type, headers=headers)
        elif processed:    # drip
            self.drip(int(fault.get("status", status)), answer,
                      float(fault["drip"]))
        elif "hang" in fault:
            self.close_connection = True
            time.sleep(float(fault["hang"]))
        elif "huge" in fault:
            self.send_huge(int(fault["huge"]), huge_token)
        elif "status" in fault:
            self.send_fault(fault)
        else:
            self.send_json(500, {"error": "server_error",
                                 "error_description": "unknown fault %r" % fault})

    # -- signed assertions: Google- and GitHub-style ---------------------

    def assertion_entry(self, path, grant, jwt):
        """A log entry for a signed-assertion request; the JWT itself is a
        secret.  Caller holds the lock."""
        if jwt and len(jwt) >= 6:
            self.state.extra_secrets.append(jwt)
        entry = {"t": time.time(), "server_now": self.now(),
                 "path": path, "grant_type": grant, "client_id": None,
                 "auth": "assertion", "refresh_token_used": None,
                 "params": {}, "status": None, "fault": None, "error": None,
                 "header": None, "claims": None,
                 "issued_access_token": None, "issued_refresh_token": None}
        self.state.log.append(entry)
        return entry

    def google_token(self, body):
        st = self.state
        form, form_error = parse_form(self.headers.get("Content-Type", ""),
                                      body)
        aud = "https://%s:%d%s" % (self.server.server_address[0],
                                   self.server.server_address[1], GOOGLE_PATH)
        with st.lock:
            entry = self.assertion_entry(GOOGLE_PATH, form.get("grant_type"),
                                         form.get("assertion"))
            entry["params"] = {k: v for k, v in form.items()
                               if k != "assertion"}
            queue = st.faults.get(GOOGLE_PATH)
            fault = queue.popleft() if queue else None
            entry["fault"] = fault
            cfg = dict(st.settings)
            now = self.now()
        if fault is not None:
            entry["status"] = int(fault.get("status", 500))
            self.send_queued_fault(fault)
            return
        try:
            if form_error:
                raise OAuthError(400, "invalid_request", form_error)
            if form.get("grant_type") != JWT_BEARER_GRANT:
                raise OAuthError(400, "unsupported_grant_type",
                                 "want %s" % JWT_BEARER_GRANT)
            header, claims = jwt_parts(form.get("assertion"))
            entry["header"], entry["claims"] = header, claims
            entry["client_id"] = claims.get("iss")
            account = (cfg["service_accounts"] or {}).get(claims.get("iss"))
            if not isinstance(account, dict):
                raise OAuthError(400, "invalid_grant", "unknown iss")
            if header.get("alg") != account.get("alg", "RS256"):
                raise OAuthError(400, "invalid_grant", "alg must be %s" %
                                 account.get("alg", "RS256"))
            if account.get("kid") and header.get("kid") != account["kid"]:
                raise OAuthError(400, "invalid_grant",
                                 "kid is not the key's private_key_id")
            if not openssl_verify(header["alg"], account["key"],
                                  form["assertion"]):
                raise OAuthError(400, "invalid_grant", "Invalid JWT "
                                 "Signature.")
            scope = claims.get("scope")
            if not isinstance(scope, str) or not scope.strip():
                raise OAuthError(400, "invalid_scope", "no scope claim")
            if account.get("scope") and scope != account["scope"]:
                raise OAuthError(400, "invalid_scope", "scope claim %r, want "
                                 "%r" % (scope, account["scope"]))
            if claims.get("aud") != aud:
                raise OAuthError(400, "invalid_grant", "aud must be %s" % aud)
            check_times(claims, now, float(cfg["clock_leeway"]),
                        MAX_GOOGLE_JWT, lambda why: OAuthError(
                            400, "invalid_grant", "Invalid JWT: " + why))
        except OAuthError as e:
            with st.lock:
                entry["status"], entry["error"] = e.status, e.error
                entry["error_description"] = e.description
            self.send_json(e.status, error_body(GOOGLE_PATH, e))
            return
        lifetime = int(cfg["lifetime"])
        with st.lock:
            access = "ya29." + st.next_token("sa")
            st.issued_access.append(access)
            entry["status"] = 200
            entry["issued_access_token"] = access
        self.send_json(200, {"access_token": access, "expires_in": lifetime,
                             "token_type": "Bearer"})

    def github_token(self, path, body):
        st = self.state
        auth = self.headers.get("Authorization") or ""
        scheme, _, jwt = auth.strip().partition(" ")
        jwt = jwt.strip()
        with st.lock:
            entry = self.assertion_entry(path, None, jwt)
            entry["params"] = {"content_length": len(body)}
            queue = st.faults.get("/app/installations")
            fault = queue.popleft() if queue else None
            entry["fault"] = fault
            cfg = dict(st.settings)
            now = self.now()
        if fault is not None:
            entry["status"] = int(fault.get("status", 500))
            self.send_queued_fault(fault)
            return

        class Refusal(Exception):
            pass
        try:
            if scheme.lower() != "bearer" or not jwt:
                raise Refusal("A JSON web token could not be decoded")
            if body:
                raise Refusal("the body must be empty")
            try:
                header, claims = jwt_parts(jwt)
            except OAuthError:
                raise Refusal("A JSON web token could not be decoded")
            entry["header"], entry["claims"] = header, claims
            iss = claims.get("iss")
            entry["client_id"] = iss
            app = None
            for app_id, info in (cfg["github_apps"] or {}).items():
                if str(iss) in (app_id, info.get("client_id")):
                    app = info
            if app is None:
                raise Refusal("Integration not found")
            if header.get("alg") != "RS256":
                raise Refusal("'alg' must be RS256")
            if not openssl_verify("RS256", app["key"], jwt):
                raise Refusal("A JSON web token could not be decoded")
            check_times(claims, now, float(cfg["clock_leeway"]),
                        None, Refusal)
            if claims["exp"] > now + MAX_GITHUB_JWT:
                raise Refusal("'Expiration time' claim ('exp') is too far "
                              "in the future")
        except Refusal as e:
            with st.lock:
                entry["status"], entry["error"] = 401, str(e)
            self.send_json(401, {"message": str(e),
                                 "documentation_url": GITHUB_DOCS})
            return
        lifetime = int(cfg["github_lifetime"])
        with st.lock:
            token = "ghs_" + rnd.token_hex(18)
            st.issued_access.append(token)
            entry["status"] = 201
            entry["issued_access_token"] = token
            entry["expires_at"] = now + lifetime
        self.send_json(201, {
            "token": token,
            "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                        time.gmtime(now + lifetime)),
            "permissions": {"contents": "read"},
            "repository_selection": "all"})

    # -- discovery and revocation ----------------------------------------

    def metadata(self, path):
        """OpenID Connect Discovery 1.0 / RFC 8414 metadata for the issuer
        that `path` names."""
        st = self.state
        base = "https://%s:%d" % (self.server.server_address[0],
                                  self.server.server_address[1])
        with st.lock:
            st.discovery_log.append(path)
            queue = st.faults.get("/.well-known")
            fault = queue.popleft() if queue else None
            cfg = dict(st.settings)
        if fault is not None:
            self.send_queued_fault(fault)
            return
        if OIDC_WELL_KNOWN in path:
            if not cfg["discovery_oidc"] or not path.endswith(OIDC_WELL_KNOWN):
                self.send_json(404, {"error": "not_found"})
                return
            issuer = base + path[:-len(OIDC_WELL_KNOWN)]
        else:
            issuer = base + path[len(RFC8414_WELL_KNOWN):]
        doc = {"issuer": cfg["discovery_issuer"] or issuer,
               "token_endpoint": base + "/token",
               "revocation_endpoint": base + "/revoke",
               "authorization_endpoint": base + "/authorize",
               "device_authorization_endpoint": base + "/device_authorization",
               "code_challenge_methods_supported": ["S256"],
               "grant_types_supported": ["client_credentials", "password",
                                         "refresh_token"]}
        if cfg["discovery_auth_methods"] is not None:
            doc["token_endpoint_auth_methods_supported"] = \
                cfg["discovery_auth_methods"]
        doc.update(cfg["discovery_extra"] or {})
        self.send_json(200, doc)

    def revoke(self, body):
        """RFC 7009: 200 for any token, valid or not; a refresh token
        revoked is dead for the refresh_token grant."""
        st = self.state
        form, form_error = parse_form(self.headers.get("Content-Type", ""),
                                      body)
        entry = {"t": time.time(), "token": form.get("token"),
                 "token_type_hint": form.get("token_type_hint"),
                 "client_id": None, "auth": "none", "status": None,
                 "was_alive": None}
        with st.lock:
            queue = st.faults.get("/revoke")
            fault = queue.popleft() if queue else None
            st.revocations.append(entry)
            try:
                entry["client_id"], entry["auth"], secret = \
                    client_credentials(self.headers.get("Authorization"),
                                       form, st.settings.get("basic_decode",
                                                             True))
                if fault is None:
                    check_client(st.settings, entry["client_id"], secret)
                    if form_error or not form.get("token"):
                        raise OAuthError(400, "invalid_request",
                                         form_error or "token is missing")
                    info = st.refresh_tokens.get(form["token"])
                    entry["was_alive"] = bool(info and info["alive"])
                    if info:
                        info["alive"] = False
                    elif form["token"] in st.issued_access:
                        entry["was_alive"] = True
                        st.issued_access.remove(form["token"])
                        st.extra_secrets.append(form["token"])
                    status, answer = 200, ""
                else:
                    status = int(fault.get("status", 500))
            except OAuthError as e:
                status = e.status
                answer = json.dumps(error_body("/revoke", e))
            entry["status"] = status
        if fault is not None:
            self.send_queued_fault(fault)
        elif status == 200:
            self.send_body(200, "", content_type="application/json")
        else:
            self.send_body(status, answer)

    def send_queued_fault(self, fault):
        """A hang or a status fault, for the metadata and revocation
        endpoints (which process nothing when a fault is queued)."""
        if "hang" in fault:
            self.close_connection = True
            time.sleep(float(fault["hang"]))
        else:
            self.send_fault(fault)

    def send_fault(self, fault):
        status = int(fault["status"])
        headers = dict(fault.get("headers") or {})
        if "retry_after" in fault:
            headers["Retry-After"] = str(fault["retry_after"])
        if "json" in fault:
            body = json.dumps(fault["json"])
            ctype = fault.get("content_type", "application/json")
        elif "body" in fault:
            body = fault["body"]
            ctype = fault.get("content_type", "text/plain")
        else:
            if status in (429, 503):
                error = "temporarily_unavailable"
            elif status >= 500:
                error = "server_error"
            else:
                error = "invalid_request"
            body = json.dumps({"error": error,
                               "error_description": "injected fault"})
            ctype = "application/json"
        self.send_body(status, body, content_type=ctype, headers=headers)

    def drip(self, status, body, delay):
        """A valid answer, one byte every `delay` seconds."""
        self.close_connection = True
        data = body.encode() if isinstance(body, str) else body
        head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n"
                % (status, self.responses.get(status, ("",))[0], len(data)))
        for i, byte in enumerate(head.encode() + data):
            if i:
                time.sleep(delay)
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def send_huge(self, size, token):
        """A 200 of `size` bytes, chunked: a token response plus padding."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        head = ('{"access_token":"%s","token_type":"Bearer","expires_in":%d,'
                '"padding":"' % (token, self.state.settings["lifetime"])).encode()
        tail = b'"}'
        pad = max(0, size - len(head) - len(tail))
        pieces = [head]
        while pad > 0:
            n = min(pad, 65536)
            pieces.append(b"x" * n)
            pad -= n
        pieces.append(tail)
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def device_authorization(self, form, now, client_id):
        """RFC 8628 3.2.  Caller holds the lock."""
        st = self.state
        cfg = st.settings
        user_code = "%04X-%04X" % (rnd.randbelow(65536), rnd.randbelow(65536))
        device_code = st.next_token("dc")
        st.devices[user_code] = {
            "device_code": device_code, "client_id": client_id,
            "scope": form.get("scope"), "status": "pending",
            "expires_at": now + float(cfg["device_expires_in"])}
        base = "https://127.0.0.1:%d/device" % self.server.server_address[1]
        answer = {"device_code": device_code, "user_code": user_code,
                  "verification_uri": base,
                  "verification_uri_complete": base + "?user_code=" +
                  user_code,
                  "expires_in": int(cfg["device_expires_in"])}
        if cfg["device_interval"] is not None:
            answer["interval"] = cfg["device_interval"]
        return 200, answer

    def grant(self, path, form, now, entry):
        """Run one grant; returns (status, answer).  Caller holds the lock."""
        st = self.state
        cfg = st.settings
        client_id, auth, secret = client_credentials(
            self.headers.get("Authorization"), form,
            cfg.get("basic_decode", True))
        check_client(cfg, client_id, secret)

        if path == "/device_authorization":
            return self.device_authorization(form, now, client_id)
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError(400, "invalid_request", "grant_type is missing")
        allowed = {"/token": ("client_credentials", "password", "refresh_token",
                              "authorization_code", DEVICE_GRANT),
                   "/spotinst/token": ("password",),
                   "/spotinst/refresh": ("refresh_token",)}[path]
        if grant not in allowed:
            raise OAuthError(400, "unsupported_grant_type",
                             "%s is not supported at %s" % (grant, path))

        scope = form.get("scope")
        username = None
        refresh = None
        if grant == "client_credentials":
            clients = cfg.get("clients")
            if clients is not None and not clients.get(client_id):
                raise OAuthError(400, "unauthorized_client",
                                 "public clients may not use client_credentials")
        elif grant == "password":
            username = form.get("username")
            password = form.get("password")
            if username is None or password is None:
                raise OAuthError(400, "invalid_request",
                                 "username and password are required")
            users = cfg.get("users")
            if users is not None and not (
                    username in users and
                    hmac.compare_digest(str(users[username]).encode(),
                                        password.encode())):
                raise OAuthError(400, "invalid_grant",
                                 "bad username or password",
                                 refusal="credentials")
            if cfg["refresh_tokens"]:
                refresh = st.next_token("rt")
        elif grant == DEVICE_GRANT:
            dev = next((d for d in st.devices.values()
                        if d["device_code"] == form.get("device_code")), None)
            if dev is None or dev["client_id"] != client_id:
                raise OAuthError(400, "invalid_grant", "unknown device code")
            if now >= dev["expires_at"]:
                raise OAuthError(400, "expired_token", "the code expired")
            if dev["status"] == "pending":
                raise OAuthError(400, "authorization_pending")
            if dev["status"] == "denied":
                raise OAuthError(400, "access_denied", "the user said no")
            if dev["status"] != "approved":
                raise OAuthError(400, "invalid_grant", "code already used")
            dev["status"] = "used"
            scope = dev["scope"]
            username = "device-user"
            if cfg["refresh_tokens"]:
                refresh = st.next_token("rt")
        elif grant == "authorization_code":
            info = st.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if info is None or info["client_id"] != client_id or \
                    info["redirect_uri"] != form.get("redirect_uri"):
                raise OAuthError(400, "invalid_grant",
                                 "unknown code, or another redirect_uri")
            if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(
                    b64url(hashlib.sha256(verifier.encode()).digest()),
                    info["challenge"]):
                raise OAuthError(400, "invalid_grant", "PKCE verification "
                                 "failed")
            scope = info["scope"]
            username = "browser-user"
            if cfg["refresh_tokens"]:
                refresh = st.next_token("rt")
        else:    # refresh_token
            used = form.get("refresh_token")
            if not used:
                raise OAuthError(400, "invalid_request",
                                 "refresh_token is missing")
            info = st.refresh_tokens.get(used)
            if not info or not info["alive"] or info["client_id"] != client_id:
                raise OAuthError(400, "invalid_grant",
                                 "unknown, revoked or used refresh token",
                                 refusal="refresh_token")
            username = info["username"]
            scope = scope or info["scope"]
            if cfg["rotate"]:
                info["alive"] = False
                refresh = st.next_token("rt")
            else:
                refresh = used

        if refresh and refresh not in st.refresh_tokens:
            st.refresh_tokens[refresh] = {"client_id": client_id,
                                          "username": username,
                                          "scope": scope, "alive": True}
        lifetime = int((cfg.get("client_lifetimes") or {}).get(
            client_id, cfg["lifetime"]))
        access = st.next_token("at")
        if cfg["jwt"]:
            header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            claims = {"exp": int(now + lifetime), "iat": int(now), "jti": access,
                      "sub": username or client_id or "anonymous"}
            access = "%s.%s.%s" % (header, b64url(json.dumps(claims).encode()),
                                   b64url(rnd.token_bytes(16)))
        st.issued_access.append(access)
        entry["issued_access_token"] = access
        entry["issued_refresh_token"] = refresh

        if cfg["omit_expires_in"]:
            expires = None
        elif cfg["expires_in_as_string"]:
            expires = str(lifetime)
        else:
            expires = lifetime
        if path.startswith("/spotinst/"):
            item = {"accessToken": access,
                    "tokenType": cfg["token_type"] or "bearer"}
            if refresh:
                item["refreshToken"] = refresh
            if expires is not None:
                item["expiresIn"] = expires
            return 200, spotinst_envelope(path, 200, items=[item])
        answer = {"access_token": access,
                  "token_type": cfg["token_type"] or "Bearer"}
        if expires is not None:
            answer["expires_in"] = expires
        if refresh:
            answer["refresh_token"] = refresh
        if scope:
            answer["scope"] = scope
        return 200, answer


def b64url_decode(text):
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(jwt):
    """(header, claims) of a compact JWS; OAuthError invalid_grant when it
    is not one.  The signature is checked elsewhere (openssl_verify)."""
    try:
        h, p, _ = jwt.split(".")
        header = json.loads(b64url_decode(h))
        claims = json.loads(b64url_decode(p))
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("not objects")
    except (AttributeError, ValueError, TypeError) as e:
        raise OAuthError(400, "invalid_grant", "not a JWT (%s)" % e)
    return header, claims


def check_times(claims, now, leeway, max_lifetime, refuse):
    """iat and exp as a strict server checks them against its clock `now`;
    raises refuse(why)."""
    iat, exp = claims.get("iat"), claims.get("exp")
    for name, value in (("iat", iat), ("exp", exp)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise refuse("%s must be an integer" % name)
    if iat > now + leeway:
        raise refuse("iat %d is %.0fs in the future" % (iat, iat - now))
    if exp <= now:
        raise refuse("exp %d is %.0fs in the past" % (exp, now - exp))
    if exp <= iat:
        raise refuse("exp is not after iat")
    if max_lifetime is not None and exp - iat > max_lifetime:
        raise refuse("exp - iat is %ds, over %ds" % (exp - iat, max_lifetime))


def der_length(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_integer(raw):
    """An ASN.1 DER INTEGER from big-endian unsigned bytes."""
    raw = raw.lstrip(b"\0") or b"\0"
    if raw[0] & 0x80:
        raw = b"\0" + raw
    return b"\x02" + der_length(len(raw)) + raw


def ecdsa_raw_to_der(sig, size=32):
    """JWS ES256 signatures are r||s, 32 bytes each (RFC 7518 3.4); openssl
    wants an ECDSA-Sig-Value, SEQUENCE { INTEGER r, INTEGER s }."""
    if len(sig) != 2 * size:
        raise ValueError("an ES256 signature is %d bytes, not %d" %
                         (2 * size, len(sig)))
    body = der_integer(sig[:size]) + der_integer(sig[size:])
    return b"\x30" + der_length(len(body)) + body


def openssl_verify(alg, pub_path, jwt):
    """Does the openssl command say that jwt's signature is good for the
    public key in pub_path (PEM) under alg?"""
    try:
        h, p, s = jwt.split(".")
        sig = b64url_decode(s)
        if alg == "ES256":
            sig = ecdsa_raw_to_der(sig)
    except ValueError:
        return False
    signing_input = ("%s.%s" % (h, p)).encode("ascii")
    work = tempfile.mkdtemp(prefix="issuer-verify-")
    try:
        data, sig_file = os.path.join(work, "data"), os.path.join(work, "sig")
        with open(data, "wb") as f:
            f.write(signing_input)
        with open(sig_file, "wb") as f:
            f.write(sig)
        if alg in ("RS256", "ES256"):
            cmd = ["openssl", "dgst", "-sha256", "-verify", pub_path,
                   "-signature", sig_file, data]
        elif alg == "PS256":
            cmd = ["openssl", "dgst", "-sha256", "-verify", pub_path,
                   "-sigopt", "rsa_padding_mode:pss",
                   "-sigopt", "rsa_pss_saltlen:32",
                   "-signature", sig_file, data]
        elif alg == "EdDSA":
            cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                   pub_path, "-rawin", "-in", data, "-sigfile", sig_file]
        else:
            return False
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=20)
        return res.returncode == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def delayed(fault):
    """A {"delay": SECONDS} fault alone: processed, answered late."""
    return "delay" in fault and not {"status", "hang", "huge", "drip",
                                     "close_after_request"} & set(fault)


def parse_form(content_type, body):
    """(dict of fields, error or None).  Repeated fields are an error (RFC
    6749 §3.2); so are non-form bodies."""
    mime = content_type.split(";")[0].strip().lower()
    if mime != "application/x-www-form-urlencoded":
        return {}, "Content-Type must be application/x-www-form-urlencoded"
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return {}, "a form body must be ASCII (percent-encode the rest)"
    form, error = {}, None
    for name, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
        if name in form:
            error = "parameter %s is repeated" % name
        form[name] = value
    return form, error


def client_credentials(authorization, form, decode=True):
    """(client_id, auth method, secret) from a request, per RFC 6749 §2.3.1:
    Basic credentials are form-urlencoded before base64, so decode base64,
    split at the FIRST ':', then form-urldecode each half (unless decode is
    false: some servers take the halves as they are)."""
    if authorization:
        scheme, _, param = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError(401, "invalid_client",
                             "unsupported authentication scheme")
        try:
            decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError(401, "invalid_client", "malformed Basic credentials")
        if ":" not in decoded:
            raise OAuthError(401, "invalid_client", "malformed Basic credentials")
        raw_id, raw_secret = decoded.split(":", 1)
        if decode:
            client_id = urllib.parse.unquote_plus(raw_id)
            secret = urllib.parse.unquote_plus(raw_secret)
        else:
            client_id, secret = raw_id, raw_secret
        if "client_secret" in form:
            raise OAuthError(400, "invalid_request",
                             "more than one client authentication method")
        if "client_id" in form and form["client_id"] != client_id:
            raise OAuthError(400, "invalid_request",
                             "client_id differs from the Basic credentials")
        return client_id, "basic", secret
    if "client_secret" in form:
        return form.get("client_id"), "post", form["client_secret"]
    return form.get("client_id"), "none", None


def check_client(cfg, client_id, secret):
    clients = cfg.get("clients")
    if clients is None:
        return                        # no clients configured: anyone goes
    if client_id is None or client_id not in clients:
        raise OAuthError(401, "invalid_client", "unknown client",
                         refusal="credentials")
    expected = clients[client_id] or ""
    if not hmac.compare_digest(expected.encode(), (secret or "").encode()):
        raise OAuthError(401, "invalid_client", "bad client credentials",
                         refusal="credentials")


def error_body(path, err):
    body = {"error": err.error}
    if err.description:
        body["error_description"] = err.description
    if path.startswith("/spotinst/"):
        # Spotinst wraps errors too; the RFC fields stay at the top level so
        # a client can classify the error with one rule.
        body.update(spotinst_envelope(path, err.status, errors=[
            {"code": err.error, "message": err.description or err.error}]))
    return body


def spotinst_envelope(path, status, items=None, errors=None):
    response = {"status": {"code": status,
                           "message": http.server.BaseHTTPRequestHandler
                           .responses.get(status, ("",))[0]}}
    if items is not None:
        response.update({"kind": "spotinst:oauth2:token", "items": items,
                         "count": len(items)})
    if errors is not None:
        response["errors"] = errors
    return {"request": {"id": rnd.token_hex(6), "url": path, "method": "POST",
                        "timestamp": formatdate(usegmt=True)},
            "response": response}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients that hang up or fail the TLS handshake are part of the tests.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, socket.timeout,
                            OSError)):
            return
        super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="OAuth2 token issuer for tests")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--config")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    settings = {}
    if args.config:
        with open(args.config) as f:
            settings = json.load(f)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)

    Server.address_family = socket.AF_INET6 if ":" in args.host \
        else socket.AF_INET
    server = Server((args.host, args.port), Handler)
    server.ssl_context = ctx
    server.state = State(settings)
    server.quiet = args.quiet
    port = server.server_address[1]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    if args.port_file:
        write_port_file(args.port_file, port)
    if not args.quiet:
        print("listening on %s:%d" % (args.host, port), flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
