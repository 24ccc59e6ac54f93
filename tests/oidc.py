"""The test OpenID Provider and the headless browser, for the login tests.

    from oidc import OIDC_SKIP, Provider, browser_login, provider

provider(t, **options) starts tests/oidc/provider.js (panva's oidc-provider
over HTTPS on loopback, with the test CA's server certificate) as one of
the test's issuers: the harness stops it, prints its request log when a
test fails, and scans every daemon log for every token, code and secret it
issued.  browser_login(t, url) is a human at Debian's chromium (headless,
driven by tests/oidc/browser.js) who signs in and consents, or declines.
key_provider(t, ...) starts it with the machine clients of key-based
client authentication (private_key_jwt, client_secret_jwt, mutual TLS;
tests/integration_keys.py), which need no browser.

Needs node >= 20.12, tests/oidc/node_modules (`npm ci --prefix tests/oidc`,
which `make check` runs) and /usr/bin/chromium; without them each test is
skipped and says what is missing.  Python standard library only.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    Issuer, TestFailure, TestSkipped, check, read_text, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
OIDC_DIR = os.path.join(HERE, "oidc")
PROVIDER_JS = os.path.join(OIDC_DIR, "provider.js")
BROWSER_JS = os.path.join(OIDC_DIR, "browser.js")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

DEVICE_CLIENT = "tokend-device"              # public, device_code
NATIVE_CLIENT = "tokend-native"              # public, authorization_code
CONFIDENTIAL_CLIENT = "tokend-confidential"  # client_secret_basic, both
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# client_credentials clients of key_provider()
PKJWT_CLIENT = "tokend-pkjwt"                # private_key_jwt, any --jwks key
CSJWT_CLIENT = "tokend-csjwt"                # client_secret_jwt (HS256)
TLS_CLIENT = "tokend-tls"                    # tls_client_auth (subject DN)
SELF_SIGNED_CLIENT = "tokend-selfsigned"     # self_signed_tls_client_auth


def pkjwt_client(alg):
    """The private_key_jwt client that takes only alg (its --jwks key)."""
    return "%s-%s" % (PKJWT_CLIENT, alg.lower())


def missing(browser=True):
    """What the login tests need that this machine lacks, or None
    (browser=False: all but chromium and playwright-core)."""
    node = shutil.which("node")
    if not node:
        return "no node (Node.js >= 20.12)"
    out = subprocess.run([node, "-p", "process.versions.node"],
                         capture_output=True, text=True, timeout=30)
    version = tuple(int(x) for x in out.stdout.strip().split(".")[:2]
                    if x.isdigit())
    if version < (20, 12):
        return "node %s is older than 20.12" % out.stdout.strip()
    for pkg in ("oidc-provider", "playwright-core")[:2 if browser else 1]:
        if not os.path.isdir(os.path.join(OIDC_DIR, "node_modules", pkg)):
            return "no %s: run npm ci --prefix tests/oidc" % pkg
    if browser and not os.access(CHROMIUM, os.X_OK):
        return "no %s (apt-get install chromium)" % CHROMIUM
    return None


def require_oidc(browser=True):
    why = missing(browser)
    if why:
        raise TestSkipped(why)


class Provider(Issuer):
    """One tests/oidc/provider.js process; its /_ctl/ calls are the same
    shape as tests/issuer.py's (settings, log, secrets), so the harness
    scans and reports it like any issuer."""

    def __init__(self, ctx, name="oidc", access_ttl=4, device_ttl=None,
                 interval=None, slow_down=0, issuer_claim=None,
                 cert="server", jwks=None, jwt_secret=None, ca=None,
                 tls_subject_dn=None, self_signed_jwks=None,
                 mtls_alias=False):
        super().__init__(ctx, cert=cert, name=name)
        self.mtls_port = None
        self.options = ["--access-ttl", str(access_ttl)]
        if device_ttl is not None:
            self.options += ["--device-ttl", str(device_ttl)]
        if interval is not None:
            self.options += ["--interval", str(interval)]
        if slow_down:
            self.options += ["--slow-down", str(slow_down)]
        if issuer_claim:
            self.options += ["--issuer-claim", issuer_claim]
        for flag, value in (("--jwks", jwks), ("--jwt-secret", jwt_secret),
                            ("--ca", ca), ("--tls-subject-dn", tls_subject_dn),
                            ("--self-signed-jwks", self_signed_jwks)):
            if value is not None:
                self.options += [flag, value]
        if mtls_alias:
            self.options.append("--mtls-alias")

    def start(self):
        ctx = self.ctx
        self.log_path = ctx.path(self.name + ".log")
        port_path = ctx.path(self.name + ".port")
        with open(self.log_path, "ab") as log, open(port_path, "wb") as out:
            self.proc = subprocess.Popen(
                ["node", PROVIDER_JS,
                 "--cert", os.path.join(ctx.certs, self.cert + ".pem"),
                 "--key", os.path.join(ctx.certs, self.cert + ".key"),
                 "--port", "0"] + self.options,
                stdin=subprocess.DEVNULL, stdout=out, stderr=log,
                cwd=OIDC_DIR)

        def port():
            if self.proc.poll() is not None:
                raise TestFailure("provider.js exited with %d: %s" % (
                    self.proc.returncode, read_text(self.log_path)))
            text = read_text(port_path) or ""
            return [int(x) for x in text.split()] if text.endswith("\n") \
                else None
        # node and oidc-provider take a moment to load on a busy machine
        ports = wait_for(port, 30, "the test provider to listen")
        self.port = ports[0]
        if len(ports) > 1:          # --mtls-alias: the mutual-TLS server's
            self.mtls_port = ports[1]
        return self

    @property
    def issuer(self):
        return "https://127.0.0.1:%d" % self.port

    def discovery(self):
        status, data = self._call("GET", "/.well-known/openid-configuration")
        check(status == 200, "discovery: %d %s" % (status, data[:200]))
        return json.loads(data)

    def confidential_secret(self):
        return self.ctl("GET", "settings")["clients"][CONFIDENTIAL_CLIENT]

    def _confidential_form(self, path, form):
        pair = "%s:%s" % (CONFIDENTIAL_CLIENT, urllib.parse.quote_plus(
            self.confidential_secret()))
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Authorization": "Basic " +
                   base64.b64encode(pair.encode()).decode()}
        return self._call("POST", path, urllib.parse.urlencode(form), headers)

    def introspect(self, token):
        """RFC 7662 introspection of any token (as the confidential client,
        which may look at other clients' tokens): the decoded answer."""
        status, data = self._confidential_form("/token/introspection",
                                               {"token": token})
        check(status == 200, "introspection: %d %s" % (status, data[:200]))
        return json.loads(data)

    def refresh_tokens(self):
        """Every refresh token the provider issued, oldest first."""
        return self.ctl("GET", "refresh_tokens")

    def revoke_as(self, client_id, token, hint="refresh_token"):
        """RFC 7009 revocation by a public client, behind tokend's back."""
        status, data = self._call(
            "POST", "/token/revocation", urllib.parse.urlencode(
                {"client_id": client_id, "token": token,
                 "token_type_hint": hint}),
            {"Content-Type": "application/x-www-form-urlencoded"})
        check(status == 200, "revocation: %d %s" % (status, data[:200]))

    def requests(self, route=None, grant_type=None):
        """The provider's request log, filtered: dicts with t (seconds since
        it started), route, grant_type, client_id, status, error."""
        return [e for e in self.log()
                if (route is None or e["route"] == route) and
                (grant_type is None or e["grant_type"] == grant_type)]


def provider(t, **options):
    """Start a test provider for test t (see Provider for the options)."""
    require_oidc()
    p = Provider(t, name="oidc%s" % (len(t.issuers) or ""), **options)
    t.issuers.append(p)
    return p.start()


def key_provider(t, **options):
    """Start a test provider with key-based machine clients (options: see
    Provider: jwks, jwt_secret, ca, tls_subject_dn, self_signed_jwks,
    mtls_alias); needs node and oidc-provider, not the browser."""
    require_oidc(browser=False)
    p = Provider(t, name="oidc%s" % (len(t.issuers) or ""), **options)
    t.issuers.append(p)
    return p.start()


def token_entries(op, client_id=None):
    """The provider's token requests (of one client): the log entries with
    client_auth_method, listener, client_cert, assertion {header, claims},
    status, error, error_description."""
    return [e for e in op.requests(route="token")
            if client_id is None or e["client_id"] == client_id]


def browser_login(t, url, deny=False, user="alice", user_code=None,
                  timeout=40):
    """A human opens url (an authorization URL, a verification_uri_complete,
    or a verification_uri and types user_code) in chromium, signs in and
    consents (or declines, deny=True).  Returns browser.js's answer:
    {"ok", "final_url", "text"}; fails the test when the browser could not
    get through."""
    require_oidc()
    cmd = ["node", BROWSER_JS, "--timeout", str(timeout), "--user", user]
    if deny:
        cmd.append("--deny")
    if user_code:
        cmd += ["--user-code", user_code]
    res = subprocess.run(cmd + [url], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=timeout + 30,
                         cwd=OIDC_DIR)
    with open(t.path("browser.log"), "a") as log:
        log.write("$ browser.js %s%s\n%s%s\n" % (
            "--deny " if deny else "", url, res.stdout, res.stderr))
    lines = res.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (ValueError, IndexError):
        raise TestFailure("browser.js said nothing useful (exit %d): %s" % (
            res.returncode, (res.stdout + res.stderr)[-600:]))
    check(answer.get("ok"), "browser: %s" % answer.get("error"))
    return answer
