#!/usr/bin/python3
"""jwtbearer_server.py: an RFC 7523 2.1 JWT-bearer grant server whose
assertion checks are Debian's python3-authlib (authlib.jose), for
tests/integration_keys.py: the other side of tokend's grant = jwt_bearer,
verified with code not written by us.

    /usr/bin/python3 tests/jwtbearer_server.py --cert PEM --key KEY
        --issuer ISS=PUBLIC_PEM [--issuer ...] [--port 0] [--skew SECONDS]
        [--leeway SECONDS] [--lifetime SECONDS] [--scope SCOPE]

Run it with Debian's /usr/bin/python3 (authlib is a Debian package, not in
a pyenv build).  HTTPS on 127.0.0.1 (stdlib http.server + ssl); prints the
port it listens on (one line, on stdout) once it is ready.

    POST /token   grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
                  &assertion=JWT[&scope=...]: authlib's jwt.decode with the
                  public key of the JWT's iss (any of RS256, PS256, ES256,
                  EdDSA), iss/aud/exp essential, aud = this URL, then
                  claims.validate(now, leeway) against the server's clock;
                  an iat ahead of that clock by more than the leeway, or a
                  jti seen before, is refused too.  Refusals are 400
                  invalid_grant; a token is {"access_token", "token_type",
                  "expires_in"}.
    GET  /_ctl/log       every token request (no assertion, no token)
    GET  /_ctl/secrets   every assertion received and token issued
    GET  /_ctl/settings  {"clock_skew", "clients": {}}
    POST /_ctl/settings  {"clock_skew": SECONDS}

--skew makes the server's clock (for the checks and the Date header of
every answer) run that many seconds off the machine's, so clock-skew cases
need not touch the machine's clock.
"""

import argparse
import http.server
import json
import secrets as rnd
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from email.utils import formatdate

from authlib.jose import JoseError, JsonWebKey, jwt

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_BODY = 64 * 1024


class State:
    def __init__(self, issuers, skew, leeway, lifetime, scope):
        self.lock = threading.Lock()
        self.issuers = issuers        # iss -> authlib key
        self.skew = skew
        self.leeway = leeway
        self.lifetime = lifetime
        self.scope = scope
        self.log = []
        self.secrets = []
        self.jtis = set()

    def now(self):
        return time.time() + self.skew


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "tokend-test-jwtbearer/1"
    timeout = 60

    def setup(self):
        self.request.settimeout(self.timeout)
        self.request = self.server.ssl_context.wrap_socket(
            self.request, server_side=True)
        super().setup()

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            pass

    def log_message(self, fmt, *args):
        sys.stderr.write("jwtbearer: %s\n" % (fmt % args))

    def date_time_string(self, timestamp=None):
        st = self.server.state
        return formatdate(st.now() if timestamp is None else timestamp,
                          usegmt=True)

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        st = self.server.state
        with st.lock:
            if self.path == "/_ctl/log":
                out = list(st.log)
            elif self.path == "/_ctl/secrets":
                out = list(st.secrets)
            elif self.path == "/_ctl/settings":
                out = {"clock_skew": st.skew, "clients": {}}
            else:
                out = None
        if out is None:
            self.send_json(404, {"error": "not_found"})
        else:
            self.send_json(200, out)

    def do_POST(self):
        body = self.body()
        if body is None:
            self.send_json(413, {"error": "invalid_request"})
            return
        st = self.server.state
        if self.path == "/_ctl/settings":
            try:
                change = json.loads(body or b"{}")
                with st.lock:
                    if "clock_skew" in change:
                        st.skew = float(change["clock_skew"])
                    out = {"clock_skew": st.skew, "clients": {}}
            except (ValueError, TypeError) as e:
                self.send_json(400, {"error": str(e)})
                return
            self.send_json(200, out)
        elif self.path == "/token":
            self.token(body)
        else:
            self.send_json(404, {"error": "not_found"})

    def token(self, body):
        st = self.server.state
        form = dict(urllib.parse.parse_qsl(body.decode("ascii", "replace"),
                                           keep_blank_values=True))
        port = self.server.server_address[1]
        audience = "https://127.0.0.1:%d/token" % port
        assertion = form.get("assertion", "")
        with st.lock:
            now = st.now()
            if len(assertion) >= 6:
                st.secrets.append(assertion)
            entry = {"t": time.time(), "server_now": now, "path": "/token",
                     "grant_type": form.get("grant_type"),
                     "scope": form.get("scope"), "client_id": None,
                     "auth": "assertion", "status": None, "error": None,
                     "error_description": None, "claims": None,
                     "fault": None, "refresh_token_used": None,
                     "issued_access_token": None}
            st.log.append(entry)
            issuers = dict(st.issuers)
            leeway = st.leeway

        def refuse(error, description):
            with st.lock:
                entry.update(status=400, error=error,
                             error_description=description)
            self.send_json(400, {"error": error,
                                 "error_description": description})

        if form.get("grant_type") != GRANT:
            refuse("unsupported_grant_type", "want " + GRANT)
            return
        if not assertion:
            refuse("invalid_request", "assertion is missing")
            return

        def key_for(header, payload):
            key = issuers.get(payload.get("iss"))
            if key is None:
                raise ValueError("unknown iss %r" % payload.get("iss"))
            return key
        try:
            claims = jwt.decode(assertion, key_for, claims_options={
                "iss": {"essential": True},
                "aud": {"essential": True, "value": audience},
                "exp": {"essential": True}})
            entry["claims"] = dict(claims)
            claims.validate(now=int(now), leeway=leeway)
        except (JoseError, ValueError) as e:
            refuse("invalid_grant", "authlib: %s" % (
                getattr(e, "description", None) or e))
            return
        iat = claims.get("iat")
        if isinstance(iat, (int, float)) and iat > now + leeway:
            refuse("invalid_grant", "iat is %.0fs in the future" % (iat - now))
            return
        jti = claims.get("jti")
        with st.lock:
            entry["client_id"] = claims.get("iss")
            if jti is not None and jti in st.jtis:
                replay = True
            else:
                replay = False
                if jti is not None:
                    st.jtis.add(jti)
        if replay:
            refuse("invalid_grant", "jti was used before")
            return
        if st.scope is not None and form.get("scope") != st.scope:
            refuse("invalid_scope", "scope %r, want %r" % (form.get("scope"),
                                                           st.scope))
            return
        token = "jb-" + rnd.token_hex(16)
        with st.lock:
            st.secrets.append(token)
            entry.update(status=200, issued_access_token=token)
        self.send_json(200, {"access_token": token, "token_type": "Bearer",
                             "expires_in": st.lifetime})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError,
                                          socket.timeout, OSError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--issuer", action="append", default=[],
                    metavar="ISS=PUBLIC_PEM")
    ap.add_argument("--skew", type=float, default=0)
    ap.add_argument("--leeway", type=int, default=10)
    ap.add_argument("--lifetime", type=int, default=3600)
    ap.add_argument("--scope")
    args = ap.parse_args()

    issuers = {}
    for spec in args.issuer:
        iss, sep, path = spec.partition("=")
        if not sep:
            ap.error("--issuer wants ISS=PUBLIC_PEM: %r" % spec)
        with open(path, "rb") as f:
            issuers[iss] = JsonWebKey.import_key(f.read())

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server = Server(("127.0.0.1", args.port), Handler)
    server.ssl_context = ctx
    server.state = State(issuers, args.skew, args.leeway, args.lifetime,
                         args.scope)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdout.write("%d\n" % server.server_address[1])
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
