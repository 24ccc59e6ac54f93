#!/usr/bin/env python3
"""Integration tests for key-based client credentials (issue 15).

    python3 tests/integration_keys.py --tokend build/tokend --tokenctl build/tokenctl
                                      [-k SUBSTRING] [-j N] [--keep]

The real tokend against servers that check its signatures and certificates
with code not written here:
- panva's oidc-provider (tests/oidc/provider.js): private_key_jwt with
  RS256, PS256, ES256 and EdDSA keys, client_secret_jwt (HS256),
  tls_client_auth (subject DN), self_signed_tls_client_auth (x5c), its
  mtls_endpoint_aliases, its refusal of a replayed jti (a TLS proxy here
  sends tokend's request twice), a wrong key, an expired certificate;
- tests/issuer.py's Google-style (service_account_file) and GitHub-style
  (App JWT as a Bearer header) endpoints, which verify with the openssl
  command, with their clocks 2 minutes ahead or behind;
- Debian's python3-authlib as a JWT-bearer grant server
  (tests/jwtbearer_server.py under /usr/bin/python3), also skewed.
Also `tokend --check` on bad keys (a folder, a FIFO, a mismatched alg, a
short RSA key, an encrypted one, P-384, Ed448, RSA-PSS, not PEM, ...) and
bad service-account files; keys from $CREDENTIALS_DIRECTORY; a new key or
certificate at SIGHUP, a FIFO key at SIGHUP (no hang); a refusal whose
Date header is missing or wild; the status API, /metrics and tokenctl
showing the method, the key's RFC 7638 thumbprint (computed here with the
openssl command and hashlib) and the certificate's expiry, never the key;
and no key, secret, assertion or token in tokend's logs, state or token
files.  The test_selftest_* cases run no tokend: they prove with the
test's own openssl-made assertions that each server takes a good one and
refuses bad ones.  The test's keys and certificates are
made at test time with the openssl command.

The harness, its options and its output are those of tests/integration.py;
tests/oidc.py starts the provider.  Python standard library only (but the
JWT-bearer server, run with Debian's /usr/bin/python3 and authlib; without
authlib those tests are skipped).
"""

import base64
import calendar
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    Issuer, TestFailure, TestSkipped, check, fast_refresh, main,
    parse_rfc3339_utc, read_raw, read_text, status_of, wait_for, write_file)
from integration_socket import get_metrics, metric  # noqa: E402
from oidc import (  # noqa: E402
    CSJWT_CLIENT, PKJWT_CLIENT, SELF_SIGNED_CLIENT, TLS_CLIENT, key_provider,
    pkjwt_client, token_entries)

HERE = os.path.dirname(os.path.abspath(__file__))
JWTBEARER_SERVER = os.path.join(HERE, "jwtbearer_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"      # Debian's, with python3-authlib
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGS = ("RS256", "PS256", "ES256", "EdDSA")
SKEW = 120                               # seconds a skewed server is off
TLS_DN = "CN=tokend-tls-client,O=tokend tests"


# -- keys and certificates, made with the openssl command ---------------------

def openssl(*args, stdin=None):
    res = subprocess.run(["openssl"] + list(args), input=stdin,
                         capture_output=True, timeout=60)
    if res.returncode != 0:
        raise TestFailure("openssl %s: %s" % (" ".join(args),
                                              res.stderr.decode()[-400:]))
    return res.stdout


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Key:
    """A private key in a PEM file made by the openssl command, its public
    half, and its JWK as computed here (not by tokend)."""

    def __init__(self, t, name, kind, bits=2048, traditional=False):
        self.name, self.kind = name, kind
        folder = t.path("keys")
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, name + ".key")
        self.pub_path = os.path.join(folder, name + ".pub.pem")
        if kind == "RSA":
            args = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % bits]
        elif kind == "EC":
            args = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        elif kind == "Ed25519":
            args = ["-algorithm", "ED25519"]
        else:
            raise ValueError(kind)
        openssl("genpkey", *args, "-out", self.path)
        if traditional:         # "BEGIN RSA/EC PRIVATE KEY", not PKCS#8
            pem = openssl("pkey", "-in", self.path, "-traditional")
            with open(self.path, "wb") as f:
                f.write(pem)
        os.chmod(self.path, 0o600)
        openssl("pkey", "-in", self.path, "-pubout", "-out", self.pub_path)
        self.pem = read_text(self.path)
        # the key's PEM body must never be in a log; one base64 line of it
        # is enough to tell
        t.add_secret(*[line for line in self.pem.splitlines()
                       if len(line) >= 40 and "-----" not in line][:3])
        self.jwk = public_jwk(self.path, kind)

    @property
    def default_alg(self):
        return {"RSA": "RS256", "EC": "ES256", "Ed25519": "EdDSA"}[self.kind]

    def thumbprint(self):
        return jwk_thumbprint(self.jwk)

    def sign(self, alg, signing_input):
        """A JWS signature made with the openssl command (for the tests'
        own assertions, which prove the servers accept good ones)."""
        if alg == "RS256":
            return openssl("dgst", "-sha256", "-sign", self.path,
                           stdin=signing_input)
        if alg == "PS256":
            return openssl("dgst", "-sha256", "-sign", self.path,
                           "-sigopt", "rsa_padding_mode:pss",
                           "-sigopt", "rsa_pss_saltlen:32",
                           stdin=signing_input)
        if alg == "ES256":
            return ecdsa_der_to_raw(openssl("dgst", "-sha256", "-sign",
                                            self.path, stdin=signing_input))
        if alg == "EdDSA":
            data = self.path + ".data"
            with open(data, "wb") as f:
                f.write(signing_input)
            return openssl("pkeyutl", "-sign", "-inkey", self.path,
                           "-rawin", "-in", data)
        raise ValueError(alg)


def hex_block(text, label):
    """The colon-separated hex bytes after `label:` in openssl -text."""
    m = re.search(r"^%s:\s*\n((?:\s+[0-9a-f:]+\n)+)" % re.escape(label),
                  text, re.M)
    check(m, "openssl -text_pub: no %s in %r" % (label, text[:200]))
    return bytes.fromhex(re.sub(r"[\s:]", "", m.group(1)))


def public_jwk(path, kind):
    """The public JWK (RFC 7517/7518/8037 members only) of a PEM key."""
    text = openssl("pkey", "-in", path, "-text_pub", "-noout").decode()
    if kind == "RSA":
        n = hex_block(text, "Modulus").lstrip(b"\0")
        m = re.search(r"^Exponent: (\d+)", text, re.M)
        e = int(m.group(1))
        return {"kty": "RSA", "n": b64url(n),
                "e": b64url(e.to_bytes((e.bit_length() + 7) // 8, "big"))}
    pub = hex_block(text, "pub")
    if kind == "EC":
        check(pub[0] == 4 and len(pub) == 65, "not an uncompressed P-256 point")
        return {"kty": "EC", "crv": "P-256", "x": b64url(pub[1:33]),
                "y": b64url(pub[33:])}
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(pub)}


def jwk_thumbprint(jwk):
    """RFC 7638: SHA-256 over the required members, sorted, no spaces."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"),
                "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canon = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"),
                       sort_keys=True)
    return b64url(hashlib.sha256(canon.encode()).digest())


def ecdsa_der_to_raw(der):
    """ECDSA-Sig-Value (DER) -> r||s, 32 bytes each (RFC 7518 3.4)."""
    check(der[0] == 0x30, "not a DER sequence")
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
    out = b""
    for _ in range(2):
        check(der[i] == 2, "not a DER integer")
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out


def make_jwt(header, claims, key=None, alg=None, secret=None):
    """A compact JWS of our own, signed with the openssl command (or HMAC)."""
    header = dict(header)
    header.setdefault("alg", alg)
    signing_input = ("%s.%s" % (
        b64url(json.dumps(header).encode()),
        b64url(json.dumps(claims).encode()))).encode()
    if header["alg"] == "HS256":
        sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    else:
        sig = key.sign(header["alg"], signing_input)
    return signing_input.decode() + "." + b64url(sig)


def jwt_parts(jwt):
    h, p, _ = jwt.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


def write_jwks(t, name, keys):
    """A JWKS file of public keys: [(Key, alg, kid), ...] or [jwk, ...]."""
    out = []
    for k in keys:
        if isinstance(k, dict):
            out.append(k)
            continue
        key, alg, kid = k
        jwk = dict(key.jwk)
        if alg:
            jwk["alg"] = alg
        if kid:
            jwk["kid"] = kid
        jwk["use"] = "sig"
        out.append(jwk)
    path = t.path(name + ".jwks.json")
    write_file(path, json.dumps({"keys": out}))
    return path


_serial = [0]


def make_cert(t, name, key, subject, ca=True, days=30, expired=False):
    """A client certificate for key: signed by the test CA (ca=True), or
    self-signed; expired=True: valid only in 2020 (`openssl ca` with
    -startdate/-enddate, as tests/mkcerts.sh does)."""
    folder = t.path("keys")
    cert = os.path.join(folder, name + ".crt")
    ext = os.path.join(folder, name + ".ext")
    write_file(ext, "basicConstraints = critical,CA:FALSE\n"
               "keyUsage = critical,digitalSignature\n"
               "extendedKeyUsage = clientAuth\n")
    subj = "/" + "/".join(reversed(subject.split(",")))     # RFC 4514 -> openssl
    if not ca:
        openssl("req", "-new", "-x509", "-key", key.path, "-out", cert,
                "-days", str(days), "-subj", subj, "-addext",
                "basicConstraints=critical,CA:FALSE", "-addext",
                "extendedKeyUsage=clientAuth")
        return cert
    csr = os.path.join(folder, name + ".csr")
    openssl("req", "-new", "-key", key.path, "-out", csr, "-subj", subj)
    ca_pem = os.path.join(t.certs, "ca.pem")
    ca_key = os.path.join(t.certs, "ca.key")
    if not expired:
        openssl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
                "-set_serial", "0x" + secrets.token_hex(8), "-days", str(days),
                "-extfile", ext, "-out", cert)
        return cert
    db = os.path.join(folder, name + ".ca")
    os.makedirs(db, exist_ok=True)
    write_file(os.path.join(db, "index.txt"), "")
    write_file(os.path.join(db, "serial.txt"), secrets.token_hex(8) + "\n")
    cnf = os.path.join(db, "ca.cnf")
    write_file(cnf, """[ca]
default_ca = test_ca
[test_ca]
database = %(db)s/index.txt
serial = %(db)s/serial.txt
new_certs_dir = %(db)s
certificate = %(ca)s
private_key = %(cakey)s
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
x509_extensions = leaf_ext
[policy_any]
commonName = supplied
organizationName = optional
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
""" % {"db": db, "ca": ca_pem, "cakey": ca_key})
    openssl("ca", "-batch", "-config", cnf, "-notext", "-startdate",
            "20200101000000Z", "-enddate", "20200201000000Z", "-in", csr,
            "-out", cert)
    return cert


def cert_x5c(cert):
    """The base64 DER of a PEM certificate, as a JWK's x5c holds it."""
    return base64.b64encode(openssl("x509", "-in", cert, "-outform",
                                    "DER")).decode()


# -- the other sides ----------------------------------------------------------

def authlib_missing():
    """Why the JWT-bearer server cannot run here, or None."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return "no %s (Debian's python3)" % SYSTEM_PYTHON
    res = subprocess.run([SYSTEM_PYTHON, "-c", "import authlib.jose"],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        return "%s cannot import authlib (apt-get install python3-authlib)" \
            % SYSTEM_PYTHON
    return None


class JWTBearerServer(Issuer):
    """tests/jwtbearer_server.py (authlib) as one of the test's issuers:
    the harness stops it, prints its log and scans for its secrets."""

    def __init__(self, ctx, issuers, skew=0, scope=None, lifetime=3600,
                 name="jwtbearer"):
        super().__init__(ctx, name=name)
        self.args = ["--skew", str(skew), "--lifetime", str(lifetime)]
        for iss, key in issuers.items():
            self.args += ["--issuer", "%s=%s" % (iss, key.pub_path)]
        if scope is not None:
            self.args += ["--scope", scope]

    def start(self):
        ctx = self.ctx
        self.log_path = ctx.path(self.name + ".log")
        port_path = ctx.path(self.name + ".port")
        with open(self.log_path, "ab") as log, open(port_path, "wb") as out:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, JWTBEARER_SERVER,
                 "--cert", os.path.join(ctx.certs, "server.pem"),
                 "--key", os.path.join(ctx.certs, "server.key"),
                 "--port", "0"] + self.args,
                stdin=subprocess.DEVNULL, stdout=out, stderr=log)

        def port():
            if self.proc.poll() is not None:
                raise TestFailure("jwtbearer_server.py exited with %d: %s" % (
                    self.proc.returncode, read_text(self.log_path)))
            text = read_text(port_path) or ""
            return int(text) if text.endswith("\n") else None
        self.port = wait_for(port, 20, "the JWT-bearer server to listen")
        return self

    def ok_entries(self, log=None):
        return [e for e in (log if log is not None else self.log())
                if e["status"] == 200]

    def summary(self):
        try:
            return ["%s iss=%s -> %s %s %s" % (
                e["path"], e.get("client_id"), e["status"], e.get("error"),
                e.get("error_description")) for e in self.log()] or \
                ["(no token requests)"]
        except Exception as e:
            return ["(log unavailable: %s)" % e]


def jwtbearer_server(t, issuers, **kw):
    why = authlib_missing()
    if why:
        raise TestSkipped(why)
    s = JWTBearerServer(t, issuers, name="jwtbearer%s" % (
        len(t.issuers) or ""), **kw)
    t.issuers.append(s)
    return s.start()


def post_form(iss, path, form, headers=None, context=None, port=None):
    """(status, headers, decoded JSON) of our own POST to a test server."""
    h = {"Content-Type": "application/x-www-form-urlencoded"}
    h.update(headers or {})
    c = http.client.HTTPSConnection("127.0.0.1", port or iss.port,
                                    timeout=15, context=context or
                                    iss.ctx.ssl_context())
    try:
        c.request("POST", path, body=urllib.parse.urlencode(form)
                  if isinstance(form, dict) else form, headers=h)
        r = c.getresponse()
        data = r.read()
        try:
            obj = json.loads(data)
        except ValueError:
            obj = data
        return r.status, dict(r.getheaders()), obj
    finally:
        c.close()


def mtls_context(t, cert, key):
    ctx = ssl.create_default_context(cafile=t.ca)
    ctx.load_cert_chain(cert, key.path)
    return ctx


def pkjwt_claims(client_id, aud, lifetime=60, **extra):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud,
              "jti": secrets.token_hex(12), "iat": now, "exp": now + lifetime}
    claims.update(extra)
    return claims


# -- the servers themselves: they take a good assertion, refuse bad ones ------

def test_selftest_oidc_provider_checks_assertions(t):
    """Harness self-test, no tokend: oidc-provider takes private_key_jwt
    assertions made here with the openssl command for each algorithm and
    client_secret_jwt, refuses a wrong key, a wrong alg and a replayed jti;
    mutual TLS with the right certificate passes, without one or with an
    expired one it does not."""
    keys = {alg: Key(t, alg.lower(), kind) for alg, kind in
            (("RS256", "RSA"), ("PS256", "RSA"), ("ES256", "EC"),
             ("EdDSA", "Ed25519"))}
    jwks = write_jwks(t, "clients", [(k, alg, "kid-" + alg.lower())
                                     for alg, k in keys.items()])
    tls_key = Key(t, "tls", "EC")
    tls_cert = make_cert(t, "tls", tls_key, TLS_DN)
    old_cert = make_cert(t, "old", tls_key, TLS_DN, expired=True)
    self_key = Key(t, "self", "EC")
    self_cert = make_cert(t, "self", self_key, "CN=self-signed", ca=False)
    self_jwks = write_jwks(t, "self", [dict(self_key.jwk,
                                            x5c=[cert_x5c(self_cert)])])
    secret = "csjwt-" + secrets.token_hex(20)
    op = key_provider(t, jwks=jwks, jwt_secret=secret, ca=t.ca,
                      tls_subject_dn=TLS_DN, self_signed_jwks=self_jwks)
    aud = op.issuer + "/token"

    def ask(client_id, jwt=None, context=None):
        form = {"grant_type": "client_credentials", "client_id": client_id}
        if jwt:
            form.update(client_assertion_type=CLIENT_ASSERTION_TYPE,
                        client_assertion=jwt)
        status, _, body = post_form(op, "/token", form, context=context)
        return status, body

    for alg, key in keys.items():
        for client in (pkjwt_client(alg), PKJWT_CLIENT):
            jwt = make_jwt({"kid": "kid-" + alg.lower(), "typ": "JWT"},
                           pkjwt_claims(client, aud), key, alg)
            status, body = ask(client, jwt)
            check(status == 200 and body.get("access_token"),
                  "%s as %s: %d %s" % (alg, client, status, body))
            t.add_secret(body["access_token"])
            if client == PKJWT_CLIENT:
                status, body = ask(client, jwt)
                check(status == 401 and body.get("error") == "invalid_client",
                      "a replayed %s jti: %d %s" % (alg, status, body))
    wrong = Key(t, "wrong", "RSA")
    jwt = make_jwt({"kid": "kid-rs256"}, pkjwt_claims(pkjwt_client("RS256"),
                                                      aud), wrong, "RS256")
    status, body = ask(pkjwt_client("RS256"), jwt)
    check(status == 401, "a wrong key: %d %s" % (status, body))
    jwt = make_jwt({}, pkjwt_claims(pkjwt_client("RS256"), aud),
                   keys["PS256"], "PS256")
    status, body = ask(pkjwt_client("RS256"), jwt)
    check(status == 401, "PS256 for the RS256 client: %d %s" % (status, body))
    jwt = make_jwt({}, pkjwt_claims(CSJWT_CLIENT, aud), alg="HS256",
                   secret=secret)
    status, body = ask(CSJWT_CLIENT, jwt)
    check(status == 200, "client_secret_jwt: %d %s" % (status, body))
    t.add_secret(body["access_token"])
    jwt = make_jwt({}, pkjwt_claims(CSJWT_CLIENT, aud), alg="HS256",
                   secret=secret + "x")
    status, body = ask(CSJWT_CLIENT, jwt)
    check(status == 401, "client_secret_jwt, wrong secret: %d %s" % (
        status, body))

    status, body = ask(TLS_CLIENT, context=mtls_context(t, tls_cert, tls_key))
    check(status == 200, "tls_client_auth: %d %s" % (status, body))
    t.add_secret(body["access_token"])
    status, body = ask(TLS_CLIENT)
    check(status == 401, "tls_client_auth without a cert: %d %s" % (
        status, body))
    status, body = ask(TLS_CLIENT, context=mtls_context(t, old_cert, tls_key))
    check(status == 401, "tls_client_auth, expired cert: %d %s" % (
        status, body))
    status, body = ask(TLS_CLIENT, context=mtls_context(t, self_cert,
                                                        self_key))
    check(status == 401, "tls_client_auth, self-signed cert: %d %s" % (
        status, body))
    status, body = ask(SELF_SIGNED_CLIENT, context=mtls_context(
        t, self_cert, self_key))
    check(status == 200, "self_signed_tls_client_auth: %d %s" % (status, body))
    t.add_secret(body["access_token"])
    status, body = ask(SELF_SIGNED_CLIENT, context=mtls_context(
        t, tls_cert, tls_key))
    check(status == 401, "self_signed_tls_client_auth, another cert: %d %s"
          % (status, body))
    log = token_entries(op)
    check(any(e["client_cert"] == TLS_DN for e in log),
          "the provider's log names no client certificate: %s" % log[-3:])
    check(all(e["assertion"] is None or "claims" in e["assertion"]
              for e in log), "assertions not logged: %s" % log[:2])


def test_selftest_issuer_google_github_openssl(t):
    """Harness self-test, no tokend: tests/issuer.py's Google- and
    GitHub-style endpoints take assertions made here (RS256 and ES256 at
    the Google one, through the raw-to-DER conversion) and refuse a bad
    signature, a wrong kid, aud or scope, an exp too far, an iat ahead;
    with clock_skew the Date header and the checks move."""
    rsa, ec = Key(t, "sa", "RSA"), Key(t, "sa-ec", "EC")
    app = Key(t, "app", "RSA")
    iss = t.issuer({"service_accounts": {
        "sa@test.iam": {"key": rsa.pub_path, "kid": "k1"},
        "ec@test.iam": {"key": ec.pub_path, "kid": "k2", "alg": "ES256"}},
        "github_apps": {"4711": {"key": app.pub_path,
                                 "client_id": "Iv1.abc"}}})
    aud = iss.url("/google/token")

    def google(claims, key=rsa, alg="RS256", kid="k1"):
        jwt = make_jwt({"kid": kid, "typ": "JWT"}, claims, key, alg)
        status, headers, body = post_form(iss, "/google/token", {
            "grant_type": JWT_BEARER, "assertion": jwt})
        return status, headers, body

    now = int(time.time())
    good = {"iss": "sa@test.iam", "scope": "s1 s2", "aud": aud,
            "iat": now, "exp": now + 3600}
    status, _, body = google(good)
    check(status == 200 and body.get("token_type") == "Bearer" and
          body.get("expires_in"), "a good Google assertion: %d %s" % (
              status, body))
    status, _, body = google(dict(good, iss="ec@test.iam"), ec, "ES256", "k2")
    check(status == 200, "a good ES256 one: %d %s" % (status, body))
    for what, claims, key, kid in (
            ("another key", good, app, "k1"), ("a wrong kid", good, rsa, "k9"),
            ("a wrong aud", dict(good, aud=aud + "x"), rsa, "k1"),
            ("no scope", {k: v for k, v in good.items() if k != "scope"},
             rsa, "k1"),
            ("exp - iat > 3600", dict(good, exp=now + 3601), rsa, "k1"),
            ("iat ahead", dict(good, iat=now + 60, exp=now + 120), rsa, "k1"),
            ("exp past", dict(good, iat=now - 120, exp=now - 1), rsa, "k1")):
        status, _, body = google(claims, key, kid=kid)
        check(status == 400, "%s: %d %s" % (what, status, body))

    def github(claims, key=app, alg="RS256"):
        jwt = make_jwt({"typ": "JWT"}, claims, key, alg)
        return post_form(iss, "/app/installations/99/access_tokens", b"",
                         headers={"Authorization": "Bearer " + jwt,
                                  "Accept": "application/vnd.github+json"})
    app_claims = {"iss": "4711", "iat": now - 60, "exp": now + 540}
    status, _, body = github(app_claims)
    check(status == 201 and body["token"].startswith("ghs_") and
          parse_rfc3339_utc(body["expires_at"]) > now + 3000,
          "a good app JWT: %d %s" % (status, body))
    status, _, body = github(dict(app_claims, iss="Iv1.abc"))
    check(status == 201, "iss = the client id: %d %s" % (status, body))
    for what, claims, key in (
            ("exp > now+600", dict(app_claims, exp=now + 660), app),
            ("another key", app_claims, rsa),
            ("another app", dict(app_claims, iss="4712"), app)):
        status, _, body = github(claims, key)
        check(status == 401 and "message" in body, "%s: %d %s" % (
            what, status, body))

    iss.settings(clock_skew=-SKEW)
    status, headers, body = google(good)
    check(status == 400 and "future" in body.get("error_description", ""),
          "iat at a server 2 min behind: %d %s" % (status, body))
    date = parse_http_date(headers["Date"])
    check(abs(date - (time.time() - SKEW)) < 5, "Date %s is not 2 min "
          "behind" % headers["Date"])
    iss.settings(clock_skew=SKEW)
    status, _, body = github(dict(app_claims, exp=now + 60))
    check(status == 401, "exp at a server 2 min ahead: %d %s" % (status, body))


def parse_http_date(text):
    from email.utils import parsedate_to_datetime
    return parsedate_to_datetime(text).timestamp()


def test_selftest_authlib_jwt_bearer(t):
    """Harness self-test, no tokend: the authlib JWT-bearer server takes a
    good assertion for each algorithm and refuses a wrong key, a wrong aud,
    an expired one, an iat ahead and a replayed jti; skewed, its Date moves."""
    keys = {alg: Key(t, alg.lower(), kind) for alg, kind in
            (("RS256", "RSA"), ("PS256", "RSA"), ("ES256", "EC"),
             ("EdDSA", "Ed25519"))}
    srv = jwtbearer_server(t, {"iss-" + a.lower(): k for a, k in keys.items()})
    aud = srv.url("/token")

    def ask(jwt):
        status, headers, body = post_form(srv, "/token", {
            "grant_type": JWT_BEARER, "assertion": jwt, "scope": "read"})
        return status, headers, body
    now = int(time.time())
    for alg, key in keys.items():
        claims = {"iss": "iss-" + alg.lower(), "sub": "svc", "aud": aud,
                  "jti": secrets.token_hex(8), "iat": now, "exp": now + 300}
        jwt = make_jwt({}, claims, key, alg)
        status, _, body = ask(jwt)
        check(status == 200, "%s: %d %s" % (alg, status, body))
        status, _, body = ask(jwt)
        check(status == 400 and "jti" in body["error_description"],
              "%s replayed: %d %s" % (alg, status, body))
    base = {"iss": "iss-rs256", "aud": aud, "iat": now, "exp": now + 300}
    for what, claims, key in (
            ("another key", base, keys["PS256"]),
            ("a wrong aud", dict(base, aud="https://elsewhere/token"),
             keys["RS256"]),
            ("expired", dict(base, iat=now - 600, exp=now - 300),
             keys["RS256"]),
            ("iat ahead", dict(base, iat=now + 60), keys["RS256"])):
        status, _, body = ask(make_jwt({}, dict(claims, jti=secrets.token_hex(
            8)), key, "RS256"))
        check(status == 400 and body["error"] == "invalid_grant",
              "%s: %d %s" % (what, status, body))
    srv.settings(clock_skew=SKEW)
    status, headers, body = ask(make_jwt({}, dict(
        base, exp=now + 60, jti="x1"), keys["RS256"], "RS256"))
    check(status == 400, "exp at a server 2 min ahead: %d %s" % (status, body))
    check(abs(parse_http_date(headers["Date"]) - time.time() - SKEW) < 5,
          "Date %s is not 2 min ahead" % headers["Date"])



def test_selftest_mtls_alias_and_replay_proxy(t):
    """Harness self-test, no tokend: with --mtls-alias only the alias asks
    for a certificate (tls_client_auth works there, not at the plain
    endpoint); the replay proxy sends a POST twice and hands back the
    provider's refusal of the replay."""
    key = Key(t, "tls", "EC")
    cert = make_cert(t, "tls", key, TLS_DN)
    es = Key(t, "es", "EC")
    jwks = write_jwks(t, "clients", [(es, "ES256", "k1")])
    op = key_provider(t, ca=t.ca, tls_subject_dn=TLS_DN, jwks=jwks,
                      mtls_alias=True)
    form = {"grant_type": "client_credentials", "client_id": TLS_CLIENT}
    ctx = mtls_context(t, cert, key)
    status, _, body = post_form(op, "/token", form, context=ctx,
                                port=op.mtls_port)
    check(status == 200, "tls_client_auth at the alias: %d %s" % (
        status, body))
    t.add_secret(body["access_token"])
    status, _, body = post_form(op, "/token", form, context=ctx)
    check(status == 401, "tls_client_auth at the plain endpoint: %d %s" % (
        status, body))
    log = token_entries(op, TLS_CLIENT)
    check([e["listener"] for e in log] == ["mtls", "main"], "listeners: %s"
          % log)
    proxy = ReplayProxy(t, op.port)
    client = pkjwt_client("ES256")
    jwt = make_jwt({"kid": "k1"}, pkjwt_claims(client, op.issuer + "/token"),
                   es, "ES256")
    t.add_secret(jwt)
    status, _, body = post_form(op, "/token", port=proxy.port, form={
        "grant_type": "client_credentials", "client_id": client,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": jwt})
    check(status == 401 and body.get("error") == "invalid_client",
          "through the proxy: %d %s" % (status, body))
    log = token_entries(op, client)
    check(len(log) == 2 and log[0]["status"] == 200 and
          log[1]["status"] == 401 and "only be used once" in
          (log[1]["error_detail"] or ""), "upstream: %s" % log)
    status, _, body = post_form(op, "/token", port=proxy.port, form={
        "grant_type": "client_credentials", "client_id": client,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": make_jwt({}, pkjwt_claims(
            client, op.issuer + "/token"), es, "ES256")})
    check(status == 200, "the next one through the proxy: %d %s" % (
        status, body))
    t.add_secret(body["access_token"])


RFC7638_JWK = {   # RFC 7638 3.1's example key and its thumbprint
    "kty": "RSA", "e": "AQAB", "alg": "RS256",
    "kid": "2011-04-29",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zw"
         "u1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4"
         "Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSq"
         "zs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
         "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8"
         "awapJzKnqDKgw"}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_selftest_jwk_and_thumbprint(t):
    """Harness self-test, no tokend: jwk_thumbprint gives RFC 7638's own
    example answer, and public_jwk (openssl -text_pub, parsed here) gives
    the JWK node's crypto exports for an RSA, EC and Ed25519 key."""
    check(jwk_thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT,
          "RFC 7638 example: %s" % jwk_thumbprint(RFC7638_JWK))
    for kind in ("RSA", "EC", "Ed25519"):
        key = Key(t, kind.lower(), kind)
        res = subprocess.run(["node", "-e", (
            "const c = require('crypto'), fs = require('fs');"
            "process.stdout.write(JSON.stringify(c.createPublicKey("
            "fs.readFileSync(process.argv[1])).export({format: 'jwk'})))"),
            key.pub_path], capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise TestSkipped("node cannot export a JWK: %s" % res.stderr)
        theirs = json.loads(res.stdout)
        check(theirs == key.jwk, "%s: node says %s, we say %s" % (
            kind, theirs, key.jwk))


# -- tokend's accounts --------------------------------------------------------

def install_key(d, key, name=None, mode=0o600, text=None):
    """The key's PEM in the accounts folder (a relative client_key_file is
    read from there); returns the bare name."""
    name = name or key.name + ".key"
    write_file(os.path.join(d.accounts_dir, name),
               key.pem if text is None else text, mode)
    return name


def install_file(d, src, name):
    write_file(os.path.join(d.accounts_dir, name), read_text(src), 0o644)
    return name


def key_account(t, d, name, values, refresh=None, response=None):
    """An account file: [account] values (grant client_credentials and the
    test CA unless given), fast refreshes, a raw token file; returns the
    token file's path."""
    account = {"grant": "client_credentials", "ca_file": t.ca}
    account.update(values)
    account = {k: v for k, v in account.items() if v is not None}
    token_file = t.out(name + ".token")
    sections = [("account", account), refresh or fast_refresh()]
    if response:
        sections.append(("response", response))
    sections.append(("file", {"path": token_file, "format": "raw",
                              "mode": "0600"}))
    d.write_account(name, sections)
    return token_file


def status_now(d, name):
    """status_of, or None while the socket is there but not yet listening
    (bind comes before listen)."""
    try:
        return status_of(d, name)
    except TestFailure:
        return None


def listed(d, name):
    return d.wait_for(lambda: status_now(d, name), 20, "%s to be listed" %
                      name)


def wait_log(d, fetch, pred, n, timeout, what):
    """Wait until fetch() (a server's log) has n entries for which pred is
    true; returns those entries."""
    def enough():
        got = [e for e in fetch() if pred(e)]
        return got if len(got) >= n else None
    return d.wait_for(enough, timeout, what)


def ok_status(e):
    return e.get("status") in (200, 201)


def check_fresh_token(d, name, token_file, tokens):
    """The account is fresh and its token file holds one of tokens."""
    d.wait_for(lambda: read_raw(token_file) in tokens, 10,
               "%s's token file to hold a token the server issued" % name)
    st = d.wait_for(lambda: (status_now(d, name) or {}).get("state") == "fresh"
                    and status_now(d, name), 10, "%s to be fresh" % name)
    return st


def check_key_status(d, name, method, alg, key):
    """GET /v1/status and tokenctl status NAME show the method, the alg and
    the key's RFC 7638 thumbprint (computed here), never the key."""
    st = listed(d, name)
    for field in ("client_auth", "key_alg", "key_thumbprint"):
        check(field in st, "GET /v1/status: no %s for %s: %s" % (
            field, name, sorted(st)))
    check(st["client_auth"] == method, "status client_auth %r, want %r" % (
        st["client_auth"], method))
    want = key.thumbprint() if key else None
    check(st["key_alg"] == alg, "status key_alg %r, want %r" % (
        st["key_alg"], alg))
    check(st["key_thumbprint"] == want, "status key_thumbprint %r, want %r "
          "(RFC 7638, SHA-256, base64url)" % (st["key_thumbprint"], want))
    if want:
        check(len(st["key_thumbprint"]) == 43, "thumbprint length")
    _, _, body = d.http("GET", "/v1/status")
    check(b"-----BEGIN" not in body, "the status API shows a private key")
    res = d.tokenctl("status", name)
    out = res.stdout + res.stderr
    check(res.returncode in (0, 1), "tokenctl status %s: exit %d: %s" % (
        name, res.returncode, out))
    check(method in out, "tokenctl status %s does not name the method %s:\n%s"
          % (name, method, out))
    if want:
        check(want in out, "tokenctl status %s does not show the key's "
              "thumbprint %s:\n%s" % (name, want, out))
    check("-----BEGIN" not in out, "tokenctl status shows a private key")
    return st


def check_assertions(entries, client_id, aud, alg, kid=None, max_life=600):
    """Every assertion is fresh (its own jti), iss = sub = client_id, aud,
    iat about when it was sent, exp a few minutes after; header alg, kid."""
    jtis = set()
    for e in entries:
        a = e.get("assertion")
        check(a and "claims" in a, "a request without a client_assertion: %s"
              % e)
        h, c = a["header"], a["claims"]
        check(h.get("alg") == alg, "header alg %r, want %s" % (h.get("alg"),
                                                                alg))
        if kid:
            check(h.get("kid") == kid, "header kid %r, want %r" % (
                h.get("kid"), kid))
        check(c.get("iss") == client_id and c.get("sub") == client_id,
              "iss %r sub %r, want %s" % (c.get("iss"), c.get("sub"),
                                          client_id))
        check(c.get("aud") == aud or (isinstance(c.get("aud"), list) and
                                       aud in c["aud"]),
              "aud %r, want %s" % (c.get("aud"), aud))
        check(isinstance(c.get("jti"), str) and len(c["jti"]) >= 16,
              "jti %r is not a fresh random one" % c.get("jti"))
        check(c["jti"] not in jtis, "jti %r sent twice" % c["jti"])
        jtis.add(c["jti"])
        sent = e["now"]
        check(abs(c.get("iat", 0) - sent) <= 5, "iat %r, sent at %d" % (
            c.get("iat"), sent))
        check(0 < c.get("exp", 0) - c["iat"] <= max_life, "exp - iat = %r" %
              (c.get("exp", 0) - c["iat"]))
        for claim in ("jti", "iat", "exp"):
            check(claim in c, "no %s claim" % claim)


def pkjwt_setup(t, keys):
    """A provider whose private_key_jwt clients know keys: {alg: Key}."""
    jwks = write_jwks(t, "clients", [(k, alg, "kid-" + alg.lower())
                                     for alg, k in keys.items()])
    return key_provider(t, jwks=jwks)


def new_keys(t):
    return {"RS256": Key(t, "rs256", "RSA"), "PS256": Key(t, "ps256", "RSA"),
            "ES256": Key(t, "es256", "EC"),
            "EdDSA": Key(t, "eddsa", "Ed25519")}


# -- private_key_jwt, client_secret_jwt ----------------------------------------

def test_private_key_jwt_each_alg(t):
    """private_key_jwt against oidc-provider with an RS256, PS256 (chosen by
    client_key_alg), ES256 and EdDSA key, each client taking only its
    alg: tokens over several 4 s lifetimes, every assertion fresh; status
    and tokenctl show the method, alg and thumbprint."""
    keys = new_keys(t)
    op = pkjwt_setup(t, keys)
    d = t.daemon()
    files = {}
    for alg, key in keys.items():
        files[alg] = key_account(t, d, alg.lower(), {
            "token_url": op.issuer + "/token",
            "client_id": pkjwt_client(alg), "client_auth": "private_key_jwt",
            "client_key_file": install_key(d, key),
            "client_key_id": "kid-" + alg.lower(),
            "client_key_alg": "PS256" if alg == "PS256" else None})
    d.start()
    for alg, key in keys.items():
        client = pkjwt_client(alg)
        got = wait_log(d, lambda: token_entries(op, client), ok_status, 3, 30,
                       "three tokens for %s" % client)
        entries = token_entries(op, client)
        bad = [e for e in entries if not ok_status(e)]
        check(not bad, "%s: refused requests: %s" % (client, [
            (e["error"], e["error_detail"]) for e in bad]))
        check(all(e["client_auth_method"] == "private_key_jwt"
                  for e in entries), "not private_key_jwt")
        check_assertions(entries, client, op.issuer + "/token", alg,
                         kid="kid-" + alg.lower())
        tokens = [tok for tok in op.secrets()]
        check_fresh_token(d, alg.lower(), files[alg], tokens)
        check_key_status(d, alg.lower(), "private_key_jwt", alg, key)
        check(got, "no tokens")


def test_es256_signatures_at_scale(t):
    """200 ES256 accounts, one assertion each, at once: oidc-provider
    takes every one the first time.  About half of such runs have an r or
    s with a leading zero byte, which must still be 32 bytes of r||s (a
    refusal would be hidden by the retry, so the provider's log counts)."""
    key = Key(t, "es", "EC")
    op = pkjwt_setup(t, {"ES256": key})
    d = t.daemon()
    name = install_key(d, key)
    n = 200
    for i in range(n):
        key_account(t, d, "es%03d" % i, {
            "token_url": op.issuer + "/token",
            "client_id": pkjwt_client("ES256"),
            "client_auth": "private_key_jwt", "client_key_file": name,
            "client_key_id": "kid-es256"},
            refresh=fast_refresh(min_backoff="30s", max_backoff="60s"))
    d.start()
    wait_log(d, lambda: token_entries(op), ok_status, n, 45,
             "%d tokens" % n)
    bad = [e for e in token_entries(op) if not ok_status(e)]
    check(not bad, "%d ES256 assertions refused: %s" % (len(bad), [
        (e["error"], e["error_detail"]) for e in bad[:5]]))


def test_private_key_jwt_traditional_pem_and_discovery(t):
    """Keys in traditional PEM ("BEGIN RSA/EC PRIVATE KEY"), the endpoint
    found by discovery (issuer =), the any-key client picking the key by
    kid; the default alg comes from the key's type."""
    rsa = Key(t, "trad-rsa", "RSA", traditional=True)
    ec = Key(t, "trad-ec", "EC", traditional=True)
    check("BEGIN RSA PRIVATE KEY" in rsa.pem and "BEGIN EC PRIVATE KEY" in
          ec.pem, "openssl did not write traditional PEM")
    jwks = write_jwks(t, "clients", [(rsa, "RS256", "k-rsa"),
                                     (ec, "ES256", "k-ec")])
    op = key_provider(t, jwks=jwks)
    d = t.daemon()
    key_account(t, d, "rsa", {
        "issuer": op.issuer, "client_id": pkjwt_client("RS256"),
        "client_auth": "private_key_jwt", "client_key_id": "k-rsa",
        "client_key_file": install_key(d, rsa)})
    key_account(t, d, "ec", {
        "issuer": op.issuer, "client_id": PKJWT_CLIENT,
        "client_auth": "private_key_jwt", "client_key_id": "k-ec",
        "client_key_file": install_key(d, ec)})
    d.start()
    for client, alg, kid in ((pkjwt_client("RS256"), "RS256", "k-rsa"),
                             (PKJWT_CLIENT, "ES256", "k-ec")):
        wait_log(d, lambda: token_entries(op, client), ok_status, 2, 30,
                 "two tokens for %s" % client)
        entries = token_entries(op, client)
        check(all(ok_status(e) for e in entries), "%s refused: %s" % (
            client, [(e["error"], e["error_detail"]) for e in entries]))
        check_assertions(entries, client, op.issuer + "/token", alg, kid=kid)
    check_key_status(d, "rsa", "private_key_jwt", "RS256", rsa)
    check_key_status(d, "ec", "private_key_jwt", "ES256", ec)


def test_client_secret_jwt_hs256(t):
    """client_secret_jwt: an HS256 assertion made with client_secret (from
    a file), which never shows in a log; no key, so no thumbprint."""
    secret = "csjwt-secret-" + secrets.token_hex(20)
    op = key_provider(t, jwt_secret=secret)
    d = t.daemon()
    token_file = key_account(t, d, "hs", {
        "token_url": op.issuer + "/token", "client_id": CSJWT_CLIENT,
        "client_auth": "client_secret_jwt",
        "client_secret_file": d.write_secret("hs.secret", secret)})
    d.start()
    wait_log(d, lambda: token_entries(op, CSJWT_CLIENT), ok_status, 3, 30,
             "three tokens")
    entries = token_entries(op, CSJWT_CLIENT)
    check(all(ok_status(e) and e["client_auth_method"] == "client_secret_jwt"
              for e in entries), "refused: %s" % [
                  (e["error"], e["error_detail"]) for e in entries])
    check_assertions(entries, CSJWT_CLIENT, op.issuer + "/token", "HS256")
    check_fresh_token(d, "hs", token_file, op.secrets())
    check_key_status(d, "hs", "client_secret_jwt", "HS256", None)


def test_client_secret_jwt_wrong_secret(t):
    """client_secret_jwt with a wrong secret: refused, one retry with a
    new assertion, refused: failed, and neither secret in any log."""
    op = key_provider(t, jwt_secret="csjwt-right-" + secrets.token_hex(16))
    wrong = "csjwt-wrong-" + secrets.token_hex(16)
    d = t.daemon()
    key_account(t, d, "hs", {
        "token_url": op.issuer + "/token", "client_id": CSJWT_CLIENT,
        "client_auth": "client_secret_jwt",
        "client_secret_file": d.write_secret("hs.secret", wrong)},
        refresh=fast_refresh(min_backoff="30s", max_backoff="60s"))
    d.start()
    st = d.wait_for(lambda: (status_now(d, "hs") or {}).get("state") ==
                    "failed" and status_now(d, "hs"), 20, "the account to "
                    "fail")
    entries = token_entries(op, CSJWT_CLIENT)
    check(len(entries) == 2 and all(e["status"] == 401 for e in entries),
          "want two refused requests: %s" % [(e["status"], e["error"])
                                             for e in entries])
    check(entries[0]["assertion"]["claims"]["jti"] !=
          entries[1]["assertion"]["claims"]["jti"], "the retry reused it")
    check("invalid_client" in (st["last_error"] or ""), "last_error %r" %
          st["last_error"])


# -- mutual TLS -----------------------------------------------------------------

def test_tls_client_auth(t):
    """tls_client_auth: the certificate the test CA issued (subject DN
    checked by oidc-provider) and its key in TLS; the form carries only
    client_id; status shows the key's thumbprint."""
    key = Key(t, "tls", "EC")
    cert = make_cert(t, "tls", key, TLS_DN)
    op = key_provider(t, ca=t.ca, tls_subject_dn=TLS_DN)
    d = t.daemon()
    token_file = key_account(t, d, "tls", {
        "token_url": op.issuer + "/token", "client_id": TLS_CLIENT,
        "client_auth": "tls_client_auth",
        "client_cert_file": install_file(d, cert, "tls.crt"),
        "client_key_file": install_key(d, key)})
    d.start()
    wait_log(d, lambda: token_entries(op, TLS_CLIENT), ok_status, 2, 30,
             "two tokens")
    entries = token_entries(op, TLS_CLIENT)
    check(all(ok_status(e) for e in entries), "refused: %s" % [
        (e["error"], e["error_detail"]) for e in entries])
    check(all(e["client_cert"] == TLS_DN and e["assertion"] is None and
              e["auth"] == "none" for e in entries),
          "not a client certificate alone: %s" % entries[0])
    check_fresh_token(d, "tls", token_file, op.secrets())
    check_mtls_status(d, "tls", "tls_client_auth", key, cert)


def check_mtls_status(d, name, method, key, cert=None):
    """Mutual TLS signs nothing: key_alg is null; the thumbprint is the
    key's (the certificate's)."""
    st = listed(d, name)
    check(st.get("client_auth") == method, "status client_auth %r" %
          st.get("client_auth"))
    check(st.get("key_thumbprint") == key.thumbprint(),
          "status key_thumbprint %r, want %r" % (st.get("key_thumbprint"),
                                                 key.thumbprint()))
    check(st.get("key_alg") is None, "key_alg %r for mutual TLS, which "
          "signs nothing" % st.get("key_alg"))
    if cert:
        end = openssl("x509", "-in", cert, "-noout", "-enddate").decode()
        want = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.strptime(
            end.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y GMT"))
        check(st.get("cert_expires_at") == want, "status cert_expires_at "
              "%r, the certificate's notAfter %s" % (
                  st.get("cert_expires_at"), want))
        _, ms = get_metrics(d)
        value = metric(ms, "tokend_client_cert_expiry_timestamp_seconds",
                       account=name)
        check(value == calendar.timegm(time.strptime(want,
                                                     "%Y-%m-%dT%H:%M:%SZ")),
              "tokend_client_cert_expiry_timestamp_seconds{account=%r} is "
              "%r, want the notAfter %s" % (name, value, want))
    check_key_status(d, name, method, st.get("key_alg"), key)


def test_self_signed_tls_client_auth(t):
    """self_signed_tls_client_auth: a self-signed certificate whose x5c is
    in the client's JWKS at oidc-provider."""
    key = Key(t, "self", "RSA")
    cert = make_cert(t, "self", key, "CN=tokend self-signed", ca=False)
    jwks = write_jwks(t, "self", [dict(key.jwk, x5c=[cert_x5c(cert)])])
    op = key_provider(t, ca=t.ca, self_signed_jwks=jwks)
    d = t.daemon()
    token_file = key_account(t, d, "self", {
        "token_url": op.issuer + "/token", "client_id": SELF_SIGNED_CLIENT,
        "client_auth": "self_signed_tls_client_auth",
        "client_cert_file": install_file(d, cert, "self.crt"),
        "client_key_file": install_key(d, key)})
    d.start()
    wait_log(d, lambda: token_entries(op, SELF_SIGNED_CLIENT), ok_status, 2,
             30, "two tokens")
    entries = token_entries(op, SELF_SIGNED_CLIENT)
    check(all(ok_status(e) for e in entries), "refused: %s" % [
        (e["error"], e["error_detail"]) for e in entries])
    check_fresh_token(d, "self", token_file, op.secrets())
    check_mtls_status(d, "self", "self_signed_tls_client_auth", key, cert)


def test_mtls_endpoint_aliases_from_discovery(t):
    """oidc-provider does not publish mtls_endpoint_aliases on its own;
    provider.js --mtls-alias adds it (RFC 8705 5) for a second server that
    alone asks for client certificates.  Found by discovery, the mutual-TLS
    account uses the alias (and so gets tokens at all), the private_key_jwt
    one the plain token endpoint."""
    key = Key(t, "tls", "EC")
    cert = make_cert(t, "tls", key, TLS_DN)
    pk = Key(t, "pk", "EC")
    jwks = write_jwks(t, "clients", [(pk, "ES256", "k1")])
    op = key_provider(t, ca=t.ca, tls_subject_dn=TLS_DN, jwks=jwks,
                      mtls_alias=True)
    doc = op.discovery()
    alias = "https://127.0.0.1:%d/token" % op.mtls_port
    check(doc.get("mtls_endpoint_aliases", {}).get("token_endpoint") == alias,
          "discovery: %s" % doc.get("mtls_endpoint_aliases"))
    d = t.daemon()
    key_account(t, d, "tls", {
        "issuer": op.issuer, "client_id": TLS_CLIENT,
        "client_auth": "tls_client_auth",
        "client_cert_file": install_file(d, cert, "tls.crt"),
        "client_key_file": install_key(d, key)})
    key_account(t, d, "pk", {
        "issuer": op.issuer, "client_id": PKJWT_CLIENT,
        "client_auth": "private_key_jwt",
        "client_key_file": install_key(d, pk), "client_key_id": "k1"})
    d.start()
    wait_log(d, lambda: token_entries(op, TLS_CLIENT), ok_status, 2, 30,
             "two tokens for the mutual-TLS account")
    wait_log(d, lambda: token_entries(op, PKJWT_CLIENT), ok_status, 2, 30,
             "two tokens for the private_key_jwt account")
    for e in token_entries(op, TLS_CLIENT):
        check(e["listener"] == "mtls" and ok_status(e),
              "a mutual-TLS request not at the alias %s: %s" % (alias, e))
    for e in token_entries(op, PKJWT_CLIENT):
        check(e["listener"] == "main" and ok_status(e),
              "a private_key_jwt request at the mutual-TLS alias: %s" % e)
    check_assertions(token_entries(op, PKJWT_CLIENT), PKJWT_CLIENT,
                     op.issuer + "/token", "ES256", kid="k1")


def test_mtls_alias_never_overrides_a_pinned_token_url(t):
    """issuer = with a token_url the file sets: the discovered
    mtls_endpoint_aliases does not move a mutual-TLS account's requests
    off the URL the operator pinned (here the plain endpoint, which asks
    for no certificate, so the provider refuses them)."""
    key = Key(t, "tls", "EC")
    cert = make_cert(t, "tls", key, TLS_DN)
    op = key_provider(t, ca=t.ca, tls_subject_dn=TLS_DN, mtls_alias=True)
    check(op.discovery().get("mtls_endpoint_aliases"), "no alias published")
    d = t.daemon()
    key_account(t, d, "tls", {
        "issuer": op.issuer, "token_url": op.issuer + "/token",
        "client_id": TLS_CLIENT, "client_auth": "tls_client_auth",
        "client_cert_file": install_file(d, cert, "tls.crt"),
        "client_key_file": install_key(d, key)})
    d.start()
    got = d.wait_for(lambda: token_entries(op, TLS_CLIENT), 30,
                     "a token request")
    check(all(e["listener"] == "main" for e in got),
          "a request left the pinned token_url for the alias: %s" % got)


# -- refusals: a replayed jti, a wrong key, an expired certificate -------------

class ReplayProxy:
    """A TLS proxy in front of the provider's /token: the first POST it
    gets is sent upstream twice, and tokend is handed the second answer
    (the provider's refusal of the replayed assertion); after that it just
    forwards.  self.answers: (status, body) of everything upstream said."""

    def __init__(self, t, upstream_port):
        self.t = t
        self.upstream_port = upstream_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(t.certs, "server.pem"),
                                 os.path.join(t.certs, "server.key"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.replayed = False
        self.answers = []
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()
        t.cleanups.append(self.sock.close)

    def url(self, path="/token"):
        return "https://127.0.0.1:%d%s" % (self.port, path)

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,),
                             daemon=True).start()

    def upstream(self, method, path, headers, body):
        c = http.client.HTTPSConnection("127.0.0.1", self.upstream_port,
                                        timeout=15,
                                        context=self.t.ssl_context())
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            return r.status, r.reason, r.getheaders(), data
        finally:
            c.close()

    def serve(self, conn):
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
            f = tls.makefile("rb")
            while True:
                line = f.readline(8192)
                if not line.strip():
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while True:
                    h = f.readline(8192).decode()
                    if h in ("\r\n", "\n", ""):
                        break
                    k, _, v = h.partition(":")
                    headers[k.strip()] = v.strip()
                lower = {k.lower(): v for k, v in headers.items()}
                if lower.get("expect", "").lower() == "100-continue":
                    tls.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = f.read(int(lower.get("content-length") or 0))
                fwd = {k: v for k, v in headers.items() if k.lower() not in
                       ("host", "content-length", "connection", "expect")}
                answer = self.upstream(method, path, fwd, body)
                with self.lock:
                    self.answers.append((answer[0], answer[3]))
                    replay = method == "POST" and not self.replayed
                    self.replayed = self.replayed or replay
                if replay:
                    answer = self.upstream(method, path, fwd, body)
                    with self.lock:
                        self.answers.append((answer[0], answer[3]))
                status, reason, rheaders, data = answer
                out = ["HTTP/1.1 %d %s" % (status, reason)]
                for k, v in rheaders:
                    if k.lower() not in ("content-length", "connection",
                                         "transfer-encoding", "keep-alive"):
                        out.append("%s: %s" % (k, v))
                out.append("Content-Length: %d" % len(data))
                tls.sendall(("\r\n".join(out) + "\r\n\r\n").encode() + data)
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            conn.close()


def test_replayed_jti_refused_then_recovered(t):
    """A proxy sends tokend's first assertion to oidc-provider twice and
    hands tokend the answer to the replay: the provider really refused it
    (same jti as the one it took, "must only be used once"); tokend tries
    again at once with a fresh assertion, and is fresh, not failed."""
    key = Key(t, "es", "EC")
    op = pkjwt_setup(t, {"ES256": key})
    proxy = ReplayProxy(t, op.port)
    d = t.daemon()
    token_file = key_account(t, d, "replay", {
        "token_url": proxy.url(), "client_id": pkjwt_client("ES256"),
        "client_auth": "private_key_jwt",
        "assertion_audience": op.issuer + "/token",
        "client_key_file": install_key(d, key), "client_key_id": "kid-es256"},
        refresh=fast_refresh(min_backoff="30s", max_backoff="60s"))
    d.start()
    client = pkjwt_client("ES256")
    wait_log(d, lambda: token_entries(op, client), ok_status, 2, 20,
             "a token after the replay")
    entries = token_entries(op, client)
    check(len(entries) >= 3, "want taken, replay refused, retry taken: %s" %
          [(e["status"], e["error"]) for e in entries])
    first, replay, retry = entries[:3]
    jti = lambda e: e["assertion"]["claims"]["jti"]   # noqa: E731
    check(ok_status(first), "the first assertion was refused: %s" % first)
    check(jti(replay) == jti(first) and replay["status"] == 401 and
          replay["error"] == "invalid_client" and
          "only be used once" in (replay["error_detail"] or ""),
          "the provider did not refuse the replay as one: %s" % replay)
    check(ok_status(retry) and jti(retry) != jti(first),
          "tokend's retry: %s" % retry)
    check(retry["t"] - replay["t"] < 3, "the retry came %.1fs after the "
          "refusal, not at once" % (retry["t"] - replay["t"]))
    st = check_fresh_token(d, "replay", token_file, op.secrets())
    check(st["state"] == "fresh", "state %s" % st["state"])


def test_wrong_key_fails_clearly(t):
    """A key the provider does not know: refused, one retry with a fresh
    assertion, refused again: state failed with an error that says
    invalid_client; tokend keeps running, logs no key."""
    good, wrong = Key(t, "good", "EC"), Key(t, "wrong", "EC")
    op = pkjwt_setup(t, {"ES256": good})
    d = t.daemon()
    key_account(t, d, "wrong", {
        "token_url": op.issuer + "/token", "client_id": pkjwt_client("ES256"),
        "client_auth": "private_key_jwt",
        "client_key_file": install_key(d, wrong)},
        refresh=fast_refresh(min_backoff="30s", max_backoff="60s"))
    d.start()
    st = d.wait_for(lambda: (status_now(d, "wrong") or {}).get("state") ==
                    "failed" and status_now(d, "wrong"), 20,
                    "the account to fail")
    entries = token_entries(op, pkjwt_client("ES256"))
    check(len(entries) == 2 and all(e["status"] == 401 for e in entries),
          "want exactly two refused requests (one retry): %s" % [
              (e["status"], e["error"]) for e in entries])
    jtis = {e["assertion"]["claims"]["jti"] for e in entries}
    check(len(jtis) == 2, "the retry reused the assertion")
    err = st.get("last_error") or ""
    check("invalid_client" in err, "last_error does not say invalid_client: "
          "%r" % err)
    check(st["state"] == "failed", "state %s" % st["state"])
    check(wrong.thumbprint() == st.get("key_thumbprint"), "thumbprint")
    time.sleep(0.5)
    d.alive()
    text = d.log_text()
    check("-----BEGIN" not in text, "the log shows a private key")


def test_expired_client_certificate(t):
    """A client certificate that has expired: tokend --check warns (and
    passes); at run time the provider refuses it and the error says the
    certificate expired; a good token from before is kept and served."""
    key = Key(t, "tls", "EC")
    good = make_cert(t, "good", key, TLS_DN)
    old = make_cert(t, "old", key, TLS_DN, expired=True)
    op = key_provider(t, ca=t.ca, tls_subject_dn=TLS_DN, access_ttl=300)
    d = t.daemon()
    values = {"token_url": op.issuer + "/token", "client_id": TLS_CLIENT,
              "client_auth": "tls_client_auth",
              "client_cert_file": install_file(d, good, "good.crt"),
              "client_key_file": install_key(d, key)}
    # min_interval 0: tokenctl refresh may replace a token just issued
    refresh = fast_refresh(min_interval="0s", min_backoff="30s",
                           max_backoff="60s")
    token_file = key_account(t, d, "tls", values, refresh=refresh)
    d.start()
    wait_log(d, lambda: token_entries(op, TLS_CLIENT), ok_status, 1, 20,
             "a first token")
    token = d.wait_for(lambda: read_raw(token_file), 10, "the token file")
    d.stop()
    values["client_cert_file"] = install_file(d, old, "old.crt")
    token_file = key_account(t, d, "tls", values, refresh=refresh)
    rc, err = d.check_config()
    check(rc == 0, "--check failed on an expired certificate (a warning "
          "only): %d\n%s" % (rc, err))
    check(re.search(r"tls\.conf:\d+:.*warning", err) and "expire" in err,
          "--check gave no warning naming tls.conf:LINE and the expiry:\n%s"
          % err)
    d.start()
    listed(d, "tls")
    n = len(token_entries(op, TLS_CLIENT))
    res = d.tokenctl("refresh", "tls")
    st = d.wait_for(lambda: len(token_entries(op, TLS_CLIENT)) > n and
                    (status_now(d, "tls") or {}).get("last_error") and
                    status_now(d, "tls"), 20, "the refused refresh")
    refused = token_entries(op, TLS_CLIENT)[n:]
    check(refused and all(e["status"] == 401 for e in refused),
          "the provider took an expired certificate: %s" % refused)
    check(read_raw(token_file) == token, "the good token file was touched")
    status, _, body = d.http("GET", "/v1/token/tls")
    check(status == 200 and body.decode() == token,
          "the good token is not served any more: %d" % status)
    check(st.get("cert_expires_at") == "2020-02-01T00:00:00Z",
          "status cert_expires_at %r" % st.get("cert_expires_at"))
    err = st["last_error"]
    check("certificate" in err and "expire" in err, "last_error does not "
          "say the certificate expired: %r (tokenctl refresh: %s %s)" % (
              err, res.stdout, res.stderr))


# -- tokend --check on bad keys --------------------------------------------------

def check_reported(err, name, lines, words=()):
    """stderr names NAME.conf:LINE (any of lines) as an error."""
    hits = [x for x in err.splitlines()
            if any("%s.conf:%d:" % (name, n) in x for n in lines)
            and ": warning:" not in x and "unknown key" not in x
            and "unknown client_auth" not in x]
    ok = hits and all(any(w in h for h in hits) for w in words)
    return None if ok else "%s.conf:%s %s" % (name, "|".join(
        str(n) for n in lines), " ".join(words))


def raw_account(d, name, lines):
    """Write an account from (key, value) pairs; returns {key: line}."""
    text, where = ["[account]"], {"[account]": 1}
    for k, v in lines:
        text.append("%s = %s" % (k, v))
        where[k] = len(text)
    d.write_account(name, raw="\n".join(text) + "\n")
    return where


def test_check_key_problems(t):
    """tokend --check reports each with FILE:LINE: an EC key with
    client_key_alg = RS256, an RSA key of 1024 bits, an encrypted key, a
    missing key file, a key file that is a folder, one that is a FIFO
    (without hanging), private_key_jwt without client_key_file,
    tls_client_auth without client_cert_file, an assertion.jti, .iat, .exp
    or .nbf, a service_account_file of the wrong type or without its
    fields or not JSON (the key in it never quoted), a key file that is
    not PEM (its text not shown), a PEM key
    with a damaged body, a P-384 or Ed448 key, a 2.6 MB key file; a good
    account is not reported."""
    d = t.daemon()
    ec = Key(t, "ec", "EC")
    small = Key(t, "small", "RSA", bits=1024)
    enc = t.path("keys", "enc.key")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-aes256", "-pass", "pass:hunter22",
            "-out", enc)
    os.mkdir(os.path.join(d.accounts_dir, "folder.key"))
    os.mkfifo(os.path.join(d.accounts_dir, "fifo.key"), 0o600)
    base = [("grant", "client_credentials"),
            ("token_url", "https://127.0.0.1:1/token"), ("client_id", "c")]
    pk = base + [("client_auth", "private_key_jwt")]
    cases = {}      # name -> ({key: line}, keys whose line may be named, words)
    raw_account(d, "good", pk + [("client_key_file", install_key(d, ec))])
    cases["mismatch"] = (raw_account(d, "mismatch", pk + [
        ("client_key_file", install_key(d, ec, "ec2.key")),
        ("client_key_alg", "RS256")]), ("client_key_alg", "client_key_file"),
        ("RS256",))
    cases["small"] = (raw_account(d, "small", pk + [
        ("client_key_file", install_key(d, small))]), ("client_key_file",),
        ("1024",))
    cases["encrypted"] = (raw_account(d, "encrypted", pk + [
        ("client_key_file", install_key(d, None, "enc.key",
                                        text=read_text(enc)))]),
        ("client_key_file",), ("encrypted",))
    cases["missing"] = (raw_account(d, "missing", pk + [
        ("client_key_file", "no-such.key")]), ("client_key_file",),
        ("no-such.key",))
    cases["folder"] = (raw_account(d, "folder", pk + [
        ("client_key_file", "folder.key")]), ("client_key_file",),
        ("folder.key",))
    cases["fifo"] = (raw_account(d, "fifo", pk + [
        ("client_key_file", "fifo.key")]), ("client_key_file",),
        ("fifo.key",))
    cases["nokey"] = (raw_account(d, "nokey", pk), ("[account]",
                                                    "client_auth"),
                      ("client_key_file",))
    cases["nocert"] = (raw_account(d, "nocert", base + [
        ("client_auth", "tls_client_auth"),
        ("client_key_file", install_key(d, ec, "ec3.key"))]),
        ("[account]", "client_auth", "client_key_file"),
        ("client_cert_file",))
    junk = "not-a-key-but-a-secret-" + secrets.token_hex(8)
    t.add_secret(junk)
    cases["notpem"] = (raw_account(d, "notpem", pk + [
        ("client_key_file", install_key(d, None, "notpem.key",
                                        text=junk + "\n"))]),
        ("client_key_file",), ("notpem.key",))
    broken = ec.pem.replace(ec.pem.splitlines()[2], "A" * 64)
    cases["broken"] = (raw_account(d, "broken", pk + [
        ("client_key_file", install_key(d, None, "broken.key",
                                        text=broken))]),
        ("client_key_file",), ("broken.key",))
    for name, args in (("p384", ["-algorithm", "EC", "-pkeyopt",
                                 "ec_paramgen_curve:P-384"]),
                       ("ed448", ["-algorithm", "ED448"])):
        path = t.path("keys", name + ".key")
        openssl("genpkey", *args, "-out", path)
        cases[name] = (raw_account(d, name, pk + [
            ("client_key_file", install_key(d, None, name + ".key",
                                            text=read_text(path)))]),
            ("client_key_file",), ())
    cases["huge"] = (raw_account(d, "huge", pk + [
        ("client_key_file", install_key(d, None, "huge.key", text=(
            ec.pem.splitlines()[0] + "\n" + ("A" * 64 + "\n") * 40000 +
            ec.pem.splitlines()[-1] + "\n")))]), ("client_key_file",), ())
    for claim in ("jti", "iat", "exp", "nbf"):
        cases["claim_" + claim] = (raw_account(d, "claim_" + claim, pk + [
            ("client_key_file", install_key(d, ec, "ec-%s.key" % claim)),
            ("assertion." + claim, "1234567890")]), ("assertion." + claim,),
            (claim,))
    sa = {"type": "service_account", "client_email": "sa@p.iam",
          "private_key_id": "k1", "private_key": ec.pem,
          "token_uri": "https://127.0.0.1:1/token"}
    write_file(os.path.join(d.accounts_dir, "user.json"),
               json.dumps(dict(sa, type="authorized_user")), 0o600)
    write_file(os.path.join(d.accounts_dir, "nokey.json"),
               json.dumps({k: v for k, v in sa.items()
                           if k != "private_key"}), 0o600)
    write_file(os.path.join(d.accounts_dir, "noemail.json"),
               json.dumps({k: v for k, v in sa.items()
                           if k != "client_email"}), 0o600)
    # a syntax error after the key: the error must not quote the JSON
    write_file(os.path.join(d.accounts_dir, "syntax.json"),
               json.dumps(sa)[:-1] + ', "oops": }', 0o600)
    for name, word in (("user", "type"), ("nokey", "private_key"),
                       ("noemail", "client_email"), ("syntax", "syntax")):
        cases["sa_" + name] = (raw_account(d, "sa_" + name, [
            ("service_account_file", name + ".json"), ("scope", "s")]),
            ("service_account_file",), (word,))
    try:
        rc, err = d.check_config()
    except subprocess.TimeoutExpired:
        raise TestFailure("tokend --check hangs (on the FIFO key file?)")
    check(rc == 1, "tokend --check exited %d, want 1:\n%s" % (rc, err))
    missing = []
    for name, (where, keys, words) in cases.items():
        lines = [where[k] for k in keys if k in where]
        miss = check_reported(err, name, lines, words)
        if miss:
            missing.append(miss)
    check(not missing, "not reported as FILE:LINE errors: %s\nstderr:\n%s" % (
        missing, err))
    check("good.conf:" not in err.replace("good.conf: warning", ""),
          "good.conf was reported:\n%s" % err)
    check("hunter22" not in err and "-----BEGIN" not in err,
          "--check shows key material:\n%s" % err)
    # the daemon itself refuses to start on them, and does not hang either
    d.start()
    try:
        d.proc.wait(20)
    except subprocess.TimeoutExpired:
        raise TestFailure("tokend did not exit on a config with bad keys "
                          "(hangs on the FIFO?)")
    d.expected_exit = True
    check(d.proc.returncode != 0, "tokend started with bad key files")


def test_check_key_file_mode_warning(t):
    """A client_key_file that group or others may read: a --check warning
    naming FILE:LINE, not an error."""
    d = t.daemon()
    ec = Key(t, "ec", "EC")
    where = raw_account(d, "loose", [
        ("grant", "client_credentials"),
        ("token_url", "https://127.0.0.1:1/token"), ("client_id", "c"),
        ("client_auth", "private_key_jwt"),
        ("client_key_file", install_key(d, ec, mode=0o644))])
    rc, err = d.check_config()
    check(rc == 0, "--check failed on a 0644 key (a warning only): %d\n%s" % (
        rc, err))
    check("loose.conf:%d:" % where["client_key_file"] in err and "warning" in
          err, "no warning naming loose.conf:%d:\n%s" % (
              where["client_key_file"], err))


# -- Google-style service accounts, GitHub Apps, JWT-bearer (authlib) -----------

GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform " \
    "https://www.googleapis.com/auth/devstorage.read_only"
SA_EMAIL = "tokend-test@tokend-project.iam.gserviceaccount.com"
APP_ID, APP_CLIENT_ID = "4711", "Iv1.7a3b9c0d1e2f3a4b"


def google_setup(t, skew=0, lifetime=4):
    key = Key(t, "sa", "RSA")
    kid = secrets.token_hex(20)
    iss = t.issuer({"service_accounts": {SA_EMAIL: {
        "key": key.pub_path, "kid": kid, "scope": GOOGLE_SCOPE}},
        "clock_skew": skew, "lifetime": lifetime})
    sa = {"type": "service_account", "project_id": "tokend-project",
          "private_key_id": kid, "private_key": key.pem,
          "client_email": SA_EMAIL, "client_id": "1234567890",
          "auth_uri": "https://accounts.google.com/o/oauth2/auth",
          "token_uri": iss.url("/google/token")}
    return key, kid, iss, sa


def google_account(t, d, sa, extra=None):
    write_file(os.path.join(d.accounts_dir, "sa.json"), json.dumps(sa),
               0o600)
    values = {"grant": None, "service_account_file": "sa.json",
              "scope": GOOGLE_SCOPE}
    values.update(extra or {})
    return key_account(t, d, "google", values)


def test_google_service_account_file(t):
    """service_account_file: a Google JSON key fills iss (client_email), kid
    (private_key_id), the key and token_url (token_uri); the scope goes
    into the assertion; issuer.py checks the RS256 signature with openssl.
    Tokens over several 4 s lifetimes, each with a new assertion."""
    key, kid, iss, sa = google_setup(t)
    d = t.daemon()
    token_file = google_account(t, d, sa)
    d.start()
    aud = iss.url("/google/token")
    got = wait_log(d, iss.log, ok_status, 3, 30, "three tokens")
    log = iss.log()
    check(all(ok_status(e) for e in log), "refused: %s" % [
        (e["status"], e.get("error_description")) for e in log])
    for e in got:
        h, c = e["header"], e["claims"]
        check(e["grant_type"] == JWT_BEARER, "grant_type %r" % e["grant_type"])
        check(h["alg"] == "RS256" and h.get("kid") == kid, "header %s" % h)
        check(c["iss"] == SA_EMAIL and c["aud"] == aud and
              c["scope"] == GOOGLE_SCOPE, "claims %s" % c)
        check("scope" not in e["params"], "scope sent in the form too: %s" %
              e["params"])
        check(abs(c["iat"] - e["server_now"]) <= 5, "iat %d" % c["iat"])
    check(len({(e["claims"]["iat"], e["claims"].get("jti")) for e in got}) ==
          len(got) or len({e["claims"]["exp"] for e in got}) == len(got),
          "the same assertion twice")
    check_fresh_token(d, "google", token_file, iss.secrets())
    check_sa_status(d, "google", key)


def test_service_account_token_url_wins(t):
    """token_url, when set, is used instead of the key's token_uri, and is
    the assertion's aud; assertion.sub (Google's domain-wide delegation)
    goes into the claims."""
    key, kid, iss, sa = google_setup(t, lifetime=3600)
    sa["token_uri"] = "https://127.0.0.1:1/never-used"
    d = t.daemon()
    token_file = google_account(t, d, sa, {
        "token_url": iss.url("/google/token"),
        "assertion.sub": "someone@example.com"})
    d.start()
    got = wait_log(d, iss.log, ok_status, 1, 20, "a token at token_url")
    check(got[0]["claims"]["aud"] == iss.url("/google/token"), "aud %r" %
          got[0]["claims"]["aud"])
    check(got[0]["claims"].get("sub") == "someone@example.com",
          "assertion.sub (domain-wide delegation) not in the claims: %s" %
          got[0]["claims"])
    check_fresh_token(d, "google", token_file, iss.secrets())


def check_sa_status(d, name, key):
    st = listed(d, name)
    check(st.get("key_alg") == "RS256", "key_alg %r" % st.get("key_alg"))
    check(st.get("key_thumbprint") == key.thumbprint(), "key_thumbprint %r, "
          "want %r" % (st.get("key_thumbprint"), key.thumbprint()))
    res = d.tokenctl("status", name)
    check(key.thumbprint() in res.stdout, "tokenctl status %s: no "
          "thumbprint:\n%s" % (name, res.stdout))
    check("-----BEGIN" not in res.stdout + res.stderr, "a key in tokenctl")


def github_setup(t, skew=0, lifetime=5):
    key = Key(t, "app", "RSA")
    iss = t.issuer({"github_apps": {APP_ID: {"key": key.pub_path,
                                             "client_id": APP_CLIENT_ID}},
                    "clock_skew": skew, "github_lifetime": lifetime})
    return key, iss


def github_account(t, d, iss, key, extra=None):
    values = {"grant": "jwt_bearer", "assertion_in": "bearer",
              "token_url": iss.url("/app/installations/31337/access_tokens"),
              "client_id": APP_CLIENT_ID,
              "client_key_file": install_key(d, key)}
    values.update(extra or {})
    return key_account(t, d, "github", values, response={
        "access_token": "/token", "expires_at": "/expires_at"})


def test_github_app_installation_token(t):
    """GitHub App: the app JWT as Authorization: Bearer with an empty body,
    claims iat (a minute back), exp (at most 10 minutes on), iss only;
    /token and /expires_at read from the 201; each 5 s token is replaced
    before it expires."""
    key, iss = github_setup(t)
    d = t.daemon()
    token_file = github_account(t, d, iss, key)
    d.start()
    got = wait_log(d, iss.log, ok_status, 4, 40, "four installation tokens")
    log = iss.log()
    check(all(ok_status(e) for e in log), "refused: %s" % [
        (e["status"], e.get("error")) for e in log])
    for e in got:
        c = e["claims"]
        check(e["header"]["alg"] == "RS256", "alg %s" % e["header"])
        check(set(c) == {"iat", "exp", "iss"}, "claims %s, want iat, exp, "
              "iss only" % sorted(c))
        check(c["iss"] == APP_CLIENT_ID, "iss %r" % c["iss"])
        check(-70 <= c["iat"] - e["server_now"] <= -50,
              "iat is %.0fs from now, want about -60" % (
                  c["iat"] - e["server_now"]))
        check(c["exp"] <= e["server_now"] + 600, "exp over 10 minutes")
        check(e["params"]["content_length"] == 0, "a body was sent")
    for prev, nxt in zip(got, got[1:]):
        check(nxt["t"] < prev["expires_at"], "a token ran out (at %.1f) "
              "before the next came (%.1f)" % (prev["expires_at"], nxt["t"]))
    st = check_fresh_token(d, "github", token_file, iss.secrets())
    ends = [e["expires_at"] for e in iss.log() if ok_status(e)]
    check(any(abs(parse_rfc3339_utc(st["expires_at"]) - x) <= 2
              for x in ends), "status expires_at %s is none of /expires_at"
          % st["expires_at"])
    check_sa_status(d, "github", key)


def test_github_app_jwt_lifetime_capped(t):
    """assertion_in = bearer with assertion_lifetime = 10m: --check refuses
    it (FILE:LINE: 9m at most, for clocks that differ); with 9m the app
    JWT ends within the 10 minutes the GitHub-style endpoint insists on."""
    key, iss = github_setup(t, lifetime=3600)
    d = t.daemon()
    github_account(t, d, iss, key, {"assertion_lifetime": "10m"})
    rc, err = d.check_config()
    check(rc != 0 and re.search(r"github\.conf:\d+:.*assertion_lifetime: "
                                r"at most 9m", err),
          "--check took a 10-minute app JWT, or did not name "
          "assertion_lifetime at FILE:LINE: %d\n%s" % (rc, err))
    token_file = github_account(t, d, iss, key, {"assertion_lifetime": "9m"})
    rc, err = d.check_config()
    check(rc == 0, "--check refused 9m: %s" % err)
    d.start()
    got = wait_log(d, iss.log, lambda e: e["claims"], 1, 20, "an app JWT")
    c = got[0]["claims"]
    check(c["exp"] <= got[0]["server_now"] + 600, "the app JWT lives %ds "
          "from now, over GitHub's 10 minutes" % (c["exp"] -
                                                  got[0]["server_now"]))
    check(ok_status(got[0]), "refused: %s" % got[0].get("error"))
    check_fresh_token(d, "github", token_file, iss.secrets())


def test_github_app_wrong_key(t):
    """A GitHub-style 401 (a JSON "message", no OAuth error) to a JWT made
    with the wrong key: one retry, then failed, with GitHub's message in
    last_error; no token file."""
    key, iss = github_setup(t, lifetime=3600)
    wrong = Key(t, "wrong", "RSA")
    d = t.daemon()
    token_file = github_account(t, d, iss, wrong)
    d.start()
    st = d.wait_for(lambda: (status_now(d, "github") or {}).get("state") ==
                    "failed" and status_now(d, "github"), 20, "failed")
    log = iss.log()
    check(len(log) == 2 and all(e["status"] == 401 for e in log),
          "want two refusals: %s" % [(e["status"], e["error"]) for e in log])
    check("could not be decoded" in (st["last_error"] or ""),
          "last_error does not carry GitHub's message: %r" % st["last_error"])
    check(read_raw(token_file) is None, "a token file was written")


def test_github_rate_limit_403_is_not_a_refusal(t):
    """GitHub's secondary rate limit (403, Retry-After, a "message") and
    its primary one (403, X-RateLimit-Remaining: 0, X-RateLimit-Reset):
    one request each, no at-once retry with a new JWT, the account backs
    off until then (not failed), then gets its token."""
    key, iss = github_setup(t, lifetime=3600)
    d = t.daemon()
    reset = int(time.time()) + 4
    iss.faults("/app/installations", [
        {"status": 403, "retry_after": "3",
         "json": {"message": "You have exceeded a secondary rate limit."}},
        {"status": 403, "headers": {"X-RateLimit-Remaining": "0",
                                    "X-RateLimit-Reset": str(reset)},
         "json": {"message": "API rate limit exceeded."}}])
    token_file = github_account(t, d, iss, key, {
        "assertion_lifetime": "5m"})
    d.start()
    d.wait_for(lambda: read_raw(token_file), 30, "the token after the limits")
    log = iss.log()
    check([e["status"] for e in log] == [403, 403, 201],
          "requests: %s (want one per limit, then the token)" %
          [(e["status"], round(e["t"] - log[0]["t"], 1)) for e in log])
    check(log[1]["t"] - log[0]["t"] >= 2.5, "the Retry-After of 3 s was "
          "not waited for: %.1f s" % (log[1]["t"] - log[0]["t"]))
    check(log[2]["t"] >= reset - 1, "X-RateLimit-Reset was not waited for: "
          "%.1f s early" % (reset - log[2]["t"]))
    st = listed(d, "github")
    check(st["failures"] == 2 and st["state"] == "fresh", "status: %s" % st)
    check("assertion was refused" not in d.log_text(), "a rate limit was "
          "taken for a refused assertion:\n%s" % d.log_text()[-2000:])


def test_github_app_iss_from_assertion_claim(t):
    """No client_id: assertion.iss = the numeric app id makes the JWT's iss
    (a string, which GitHub takes), and still only iat, exp and iss."""
    key, iss = github_setup(t, lifetime=3600)
    d = t.daemon()
    token_file = github_account(t, d, iss, key, {"client_id": None,
                                                 "assertion.iss": APP_ID})
    d.start()
    got = wait_log(d, iss.log, ok_status, 1, 20, "a token")
    c = got[0]["claims"]
    check(c["iss"] == APP_ID and set(c) == {"iat", "exp", "iss"},
          "claims %s" % c)
    check_fresh_token(d, "github", token_file, iss.secrets())


def test_jwt_bearer_other_refusal_not_retried(t):
    """A refusal that is not about the assertion (invalid_scope) gets no
    immediate second try: one request, then the usual backoff."""
    key = Key(t, "jb", "EC")
    srv = jwtbearer_server(t, {"tokend-jb": key}, scope="read")
    d = t.daemon()
    key_account(t, d, "jb", {
        "grant": "jwt_bearer", "token_url": srv.url("/token"),
        "client_id": "tokend-jb", "client_key_file": install_key(d, key),
        "scope": "write"},
        refresh=fast_refresh(min_backoff="30s", max_backoff="60s"))
    d.start()
    d.wait_for(lambda: (status_now(d, "jb") or {}).get("last_error"), 20,
               "the refusal")
    time.sleep(2)
    log = srv.log()
    check(len(log) == 1 and log[0]["error"] == "invalid_scope",
          "want one invalid_scope answer, no second try: %s" % [
              (e["status"], e["error"]) for e in log])


def test_jwt_bearer_authlib(t):
    """grant = jwt_bearer against Debian's authlib (RFC 7523 2.1): the
    scope in the form, an EdDSA key, assertion.sub; authlib's server
    refuses a replayed jti, so every refresh proves a fresh one."""
    key = Key(t, "jb", "Ed25519")
    srv = jwtbearer_server(t, {"tokend-jb": key}, scope="read write",
                           lifetime=3)
    d = t.daemon()
    token_file = key_account(t, d, "jb", {
        "grant": "jwt_bearer", "token_url": srv.url("/token"),
        "client_id": "tokend-jb", "client_key_file": install_key(d, key),
        "scope": "read write", "assertion.sub": "svc@example.com"})
    d.start()
    got = wait_log(d, srv.log, ok_status, 3, 30, "three tokens")
    log = srv.log()
    check(all(ok_status(e) for e in log), "refused: %s" % [
        (e["error"], e["error_description"]) for e in log])
    for e in got:
        c = e["claims"]
        check(c["iss"] == "tokend-jb" and c["sub"] == "svc@example.com" and
              c["aud"] == srv.url("/token"), "claims %s" % c)
        check(e["scope"] == "read write", "form scope %r" % e["scope"])
    check_fresh_token(d, "jb", token_file, srv.secrets())
    check_sa_status_alg(d, "jb", key, "EdDSA")


def check_sa_status_alg(d, name, key, alg):
    st = listed(d, name)
    check(st.get("key_alg") == alg and st.get("key_thumbprint") ==
          key.thumbprint(), "status key_alg %r key_thumbprint %r, want %s %s"
          % (st.get("key_alg"), st.get("key_thumbprint"), alg,
             key.thumbprint()))


# -- clock skew: servers 2 minutes ahead and behind ------------------------------

def skew_case(kind, skew):
    """A test: the server's clock is skew seconds off; tokend's first
    assertion is refused, its retry (times from the answer's Date) taken."""
    ahead = skew > 0
    # ahead, an assertion is refused because its exp has passed on the
    # server's clock: give it a short life; behind, because its iat lies in
    # the server's future
    life = "60s" if ahead else None

    def test(t):
        d = t.daemon()
        if kind == "google":
            key, kid, srv, sa = google_setup(t, skew=skew, lifetime=4)
            token_file = google_account(t, d, sa, {
                "assertion_lifetime": life})
        elif kind == "github":
            key, srv = github_setup(t, skew=skew, lifetime=3600)
            token_file = github_account(t, d, srv, key, {
                "assertion_lifetime": life})
        else:
            key = Key(t, "jb", "EC")
            srv = jwtbearer_server(t, {"tokend-jb": key}, skew=skew,
                                   lifetime=4)
            token_file = key_account(t, d, "jb", {
                "grant": "jwt_bearer", "token_url": srv.url("/token"),
                "client_id": "tokend-jb", "assertion_lifetime": life,
                "client_key_file": install_key(d, key)})
        d.start()
        wait_log(d, srv.log, ok_status, 1, 20, "a token from a server %+ds "
                 "off" % skew)
        log = srv.log()
        check(len(log) == 2 and not ok_status(log[0]) and ok_status(log[1]),
              "want one refusal, then the corrected retry taken: %s" % [
                  (e["status"], e.get("error"), e.get("error_description"))
                  for e in log])
        c0, c1 = log[0]["claims"], log[1]["claims"]
        check(c1["iat"] - c0["iat"] >= skew - 10 if ahead else
              c0["iat"] - c1["iat"] >= -skew - 10,
              "the retry's iat (%d) is not moved by the server's %+ds (the "
              "first: %d)" % (c1["iat"], skew, c0["iat"]))
        check(log[1]["t"] - log[0]["t"] < 3, "the retry was not at once")
        name = {"google": "google", "github": "github", "authlib": "jb"}[kind]
        st = check_fresh_token(d, name, token_file, srv.secrets())
        check(st["state"] == "fresh", "state %s" % st["state"])
        if kind == "github":
            return     # its tokens live an hour: expires_at is absolute
        # the next refreshes (4 s tokens) keep to the server's clock: no
        # refusal each time
        wait_log(d, srv.log, ok_status, 3, 20, "two more tokens")
        refused = [e for e in srv.log() if not ok_status(e)]
        check(len(refused) == 1, "each refresh is refused first: the "
              "server's clock is not kept: %s" % [
                  (e["status"], e.get("error_description")) for e in
                  srv.log()])
    test.__name__ = "test_clock_skew_%s_%s" % (kind, "ahead" if ahead
                                                else "behind")
    test.__doc__ = ("%s-style server %+d s off the machine's clock: one "
                    "refusal, then recovered, and (but GitHub's hour-long "
                    "tokens) the next refreshes are not refused" % (kind, skew))
    return test


for _kind in ("google", "github", "authlib"):
    for _skew in (SKEW, -SKEW):
        _fn = skew_case(_kind, _skew)
        globals()[_fn.__name__] = _fn


# -- keys from $CREDENTIALS_DIRECTORY, a new key at a reload ----------------------

def test_key_from_credentials_directory(t):
    """A relative client_key_file found only in $CREDENTIALS_DIRECTORY (as
    systemd's LoadCredential= leaves it, mode 0400) signs the assertions."""
    key = Key(t, "cred", "EC")
    op = pkjwt_setup(t, {"ES256": key})
    d = t.daemon()
    creds = t.path("credentials")
    os.makedirs(creds, mode=0o700)
    write_file(os.path.join(creds, "client.key"), key.pem, 0o400)
    base = d.env

    def with_creds():
        e = base()
        e["CREDENTIALS_DIRECTORY"] = creds
        return e
    d.env = with_creds
    token_file = key_account(t, d, "cred", {
        "token_url": op.issuer + "/token", "client_id": pkjwt_client("ES256"),
        "client_auth": "private_key_jwt", "client_key_file": "client.key",
        "client_key_id": "kid-es256"})
    rc, err = d.check_config()
    check(rc == 0, "--check with the key in $CREDENTIALS_DIRECTORY: %d\n%s"
          % (rc, err))
    d.start()
    wait_log(d, lambda: token_entries(op, pkjwt_client("ES256")), ok_status,
             1, 20, "a token")
    check_fresh_token(d, "cred", token_file, op.secrets())
    check_key_status(d, "cred", "private_key_jwt", "ES256", key)


def test_new_key_at_reload(t):
    """The key is read once: a new key in the same file counts only after
    SIGHUP, and then signs (the any-key client knows both), and the status
    shows the new thumbprint."""
    old, new = Key(t, "old", "EC"), Key(t, "new", "EC")
    jwks = write_jwks(t, "clients", [(old, "ES256", "old"),
                                     (new, "ES256", "new")])
    op = key_provider(t, jwks=jwks)
    d = t.daemon()
    values = {"token_url": op.issuer + "/token", "client_id": PKJWT_CLIENT,
              "client_auth": "private_key_jwt",
              "client_key_file": install_key(d, old, "client.key"),
              "client_key_id": "old"}
    key_account(t, d, "rot", values)
    d.start()
    wait_log(d, lambda: token_entries(op, PKJWT_CLIENT), ok_status, 1, 20,
             "a token with the old key")
    check_key_status(d, "rot", "private_key_jwt", "ES256", old)
    install_key(d, new, "client.key")
    values["client_key_id"] = "new"
    key_account(t, d, "rot", values)
    n = len(token_entries(op, PKJWT_CLIENT))
    d.sighup()
    d.wait_for(lambda: (status_now(d, "rot") or {}).get("key_thumbprint") ==
               new.thumbprint(), 15, "the new key's thumbprint after SIGHUP")
    wait_log(d, lambda: token_entries(op, PKJWT_CLIENT)[n:],
             lambda e: ok_status(e) and e["assertion"]["header"].get("kid")
             == "new", 1, 20, "a token signed with the new key")
    later = token_entries(op, PKJWT_CLIENT)[n:]
    check(all(ok_status(e) for e in later), "refused after the reload: %s" %
          [(e["error"], e["error_detail"]) for e in later])
    check_key_status(d, "rot", "private_key_jwt", "ES256", new)


def test_new_certificate_at_reload(t):
    """self_signed_tls_client_auth with certificate A, then B (another key
    and subject) in the same files and SIGHUP: every request after the
    reload presents B, none goes over a connection that A opened."""
    key_a, key_b = Key(t, "a", "EC"), Key(t, "b", "EC")
    cert_a = make_cert(t, "a", key_a, "CN=self-a", ca=False)
    cert_b = make_cert(t, "b", key_b, "CN=self-b", ca=False)
    jwks = write_jwks(t, "self", [dict(key_a.jwk, x5c=[cert_x5c(cert_a)]),
                                  dict(key_b.jwk, x5c=[cert_x5c(cert_b)])])
    op = key_provider(t, ca=t.ca, self_signed_jwks=jwks)
    d = t.daemon()
    key_account(t, d, "self", {
        "token_url": op.issuer + "/token", "client_id": SELF_SIGNED_CLIENT,
        "client_auth": "self_signed_tls_client_auth",
        "client_cert_file": install_file(d, cert_a, "client.crt"),
        "client_key_file": install_key(d, key_a, "client.key")})
    d.start()
    wait_log(d, lambda: token_entries(op, SELF_SIGNED_CLIENT), ok_status, 2,
             20, "two tokens with certificate A")
    install_file(d, cert_b, "client.crt")
    install_key(d, key_b, "client.key")
    n = len(token_entries(op, SELF_SIGNED_CLIENT))
    d.sighup()
    d.wait_for(lambda: (status_now(d, "self") or {}).get("key_thumbprint")
               == key_b.thumbprint(), 15, "key B's thumbprint after SIGHUP")
    m = len(token_entries(op, SELF_SIGNED_CLIENT))
    wait_log(d, lambda: token_entries(op, SELF_SIGNED_CLIENT)[m:], ok_status,
             2, 20, "two tokens after the reload")
    after = token_entries(op, SELF_SIGNED_CLIENT)[m:]
    check(all(e["client_cert"] == "CN=self-b" for e in after),
          "after the reload, requests still present %s" % sorted(
              {e["client_cert"] for e in after}))
    check(all(ok_status(e) for e in token_entries(op, SELF_SIGNED_CLIENT)[
        n:]), "refused around the reload")


def test_fifo_key_at_reload_does_not_hang(t):
    """The key file becomes a FIFO (nobody writing) and tokend is told to
    reload: the reload is refused, the daemon keeps answering at once and
    keeps signing with the key it has."""
    key = Key(t, "es", "EC")
    op = pkjwt_setup(t, {"ES256": key})
    d = t.daemon()
    key_account(t, d, "pk", {
        "token_url": op.issuer + "/token", "client_id": pkjwt_client("ES256"),
        "client_auth": "private_key_jwt", "client_key_id": "kid-es256",
        "client_key_file": install_key(d, key, "client.key")})
    d.start()
    wait_log(d, lambda: token_entries(op, pkjwt_client("ES256")), ok_status,
             1, 20, "a first token")
    path = os.path.join(d.accounts_dir, "client.key")
    os.unlink(path)
    os.mkfifo(path, 0o600)
    d.sighup()
    time.sleep(0.5)                     # the reload's moment
    for _ in range(5):
        started = time.monotonic()
        status, _, _ = d.http("GET", "/v1/status", timeout=3)
        check(status == 200 and time.monotonic() - started < 2,
              "the daemon is stuck after a reload with a FIFO key")
    n = len(token_entries(op, pkjwt_client("ES256")))
    wait_log(d, lambda: token_entries(op, pkjwt_client("ES256"))[n:],
             ok_status, 1, 20, "a token after the refused reload")
    check_key_status(d, "pk", "private_key_jwt", "ES256", key)


def test_rsa_pss_key(t):
    """An RSA-PSS key (openssl genpkey -algorithm RSA-PSS) with
    client_key_alg = PS256: either --check refuses it at FILE:LINE, or
    oidc-provider takes its PS256 assertions; never a crash."""
    os.makedirs(t.path("keys"), exist_ok=True)
    path = t.path("keys", "pss.key")
    openssl("genpkey", "-algorithm", "RSA-PSS", "-pkeyopt",
            "rsa_keygen_bits:2048", "-out", path)
    text = openssl("pkey", "-in", path, "-text_pub", "-noout").decode()
    n = hex_block(text, "Modulus").lstrip(b"\0")
    jwk = {"kty": "RSA", "n": b64url(n), "e": "AQAB", "alg": "PS256",
           "kid": "pss"}
    op = key_provider(t, jwks=write_jwks(t, "clients", [jwk]))
    d = t.daemon()
    key_account(t, d, "pss", {
        "token_url": op.issuer + "/token", "client_id": pkjwt_client("PS256"),
        "client_auth": "private_key_jwt", "client_key_alg": "PS256",
        "client_key_id": "pss",
        "client_key_file": install_key(d, None, "pss.key",
                                       text=read_text(path))},
        refresh=fast_refresh(min_backoff="30s", max_backoff="60s"))
    rc, err = d.check_config()
    if rc != 0:
        check(re.search(r"pss\.conf:\d+:", err), "--check refused it "
              "without FILE:LINE:\n%s" % err)
        return
    d.start()
    wait_log(d, lambda: token_entries(op), lambda e: True, 1, 20,
             "a request")
    d.wait_for(lambda: (status_now(d, "pss") or {}).get("state") in
               ("fresh", "failed"), 20, "an outcome")
    entries = token_entries(op)
    check(all(ok_status(e) for e in entries), "PS256 with an RSA-PSS key "
          "passed --check but was refused: %s" % [
              (e["error"], e["error_detail"]) for e in entries])
    d.alive()


def test_certificate_not_matching_key(t):
    """tls_client_auth with a certificate for another key: --check says so
    (FILE:LINE), or at run time the account fails with an error naming the
    certificate or key; tokend never crashes."""
    key, other = Key(t, "tls", "EC"), Key(t, "other", "EC")
    cert = make_cert(t, "tls", other, TLS_DN)
    op = key_provider(t, ca=t.ca, tls_subject_dn=TLS_DN)
    d = t.daemon()
    key_account(t, d, "tls", {
        "token_url": op.issuer + "/token", "client_id": TLS_CLIENT,
        "client_auth": "tls_client_auth",
        "client_cert_file": install_file(d, cert, "tls.crt"),
        "client_key_file": install_key(d, key)},
        refresh=fast_refresh(min_backoff="30s", max_backoff="60s"))
    rc, err = d.check_config()
    if rc != 0:
        check(re.search(r"tls\.conf:\d+:", err), "--check refused it "
              "without FILE:LINE:\n%s" % err)
        return
    d.start()
    st = d.wait_for(lambda: (status_now(d, "tls") or {}).get("last_error")
                    and status_now(d, "tls"), 20, "an error")
    err = st["last_error"].lower()
    check("certificate" in err or "key" in err, "the error names neither "
          "the certificate nor the key: %r" % st["last_error"])
    d.alive()


def test_clock_skew_heals(t):
    """A server 2 minutes ahead, then its clock is put right: the
    assertions tokend dated by the old offset are refused once, the retry
    (dated by the new Date) is taken; the account never fails."""
    key, kid, srv, sa = google_setup(t, skew=SKEW, lifetime=4)
    d = t.daemon()
    token_file = google_account(t, d, sa, {"assertion_lifetime": "60s"})
    d.start()
    wait_log(d, srv.log, ok_status, 2, 20, "two tokens from the server "
             "ahead")
    srv.settings(clock_skew=0)
    n = len(srv.log())
    wait_log(d, lambda: srv.log()[n:], ok_status, 2, 20, "two tokens after "
             "the server's clock was put right")
    later = srv.log()[n:]
    refused = [e for e in later if not ok_status(e)]
    check(len(refused) <= 1, "refused more than once after the clock was "
          "put right: %s" % [(e["status"], e.get("error_description"))
                             for e in later])
    ok = [e for e in later if ok_status(e)]
    check(abs(ok[-1]["claims"]["iat"] - time.time()) < 10, "still dated by "
          "the old offset: iat %d" % ok[-1]["claims"]["iat"])
    st = check_fresh_token(d, "google", token_file, srv.secrets())
    check(st["failures"] == 0 or st["state"] == "fresh", "state %s" %
          st["state"])


def test_clock_an_hour_off_is_not_followed(t):
    """A server whose Date is an hour ahead: more than the 15 minutes
    tokend follows, so its assertions stay dated by this machine's clock
    (never an hour ahead: an assertion good only later is not handed
    out); the refusals make the account fail, and the log says why."""
    key, kid, srv, sa = google_setup(t, skew=3600, lifetime=3600)
    d = t.daemon()
    google_account(t, d, sa)
    d.start()
    st = d.wait_for(lambda: (status_now(d, "google") or {}).get("state") ==
                    "failed" and status_now(d, "google"), 20, "failed")
    log = srv.log()
    check(len(log) == 2 and not any(ok_status(e) for e in log),
          "want two refused requests: %s" % [e["status"] for e in log])
    for e in log:
        check(abs(e["claims"]["iat"] - time.time()) < 60, "an assertion "
              "dated by the far-off Date: iat %d" % e["claims"]["iat"])
    check("more than the 15 minutes followed" in d.log_text(),
          "the log does not say the Date was ignored:\n%s" %
          d.log_text()[-1500:])
    check(st["last_error"], "no last_error")


# -- a refusal whose Date header cannot be trusted --------------------------------

def bad_date_case(label, date):
    """A test: the first assertion is refused (scripted) with this Date
    header; tokend retries once, at once, and ends fresh or failed, never
    crashing (a wild Date must not break its time arithmetic)."""
    def test(t):
        key, kid, iss, sa = google_setup(t, lifetime=3600)
        iss.settings(date_header=date)
        iss.faults("/google/token", [{"status": 400, "json": {
            "error": "invalid_grant",
            "error_description": "refused by the test"}}])
        d = t.daemon()
        google_account(t, d, sa)
        d.start()
        st = d.wait_for(lambda: (status_now(d, "google") or {}).get("state")
                        in ("fresh", "failed") and len(iss.log()) >= 2 and
                        status_now(d, "google"), 20, "an outcome")
        log = iss.log()
        check(len(log) == 2, "want the refusal and one retry: %s" % [
            (e["status"], e.get("error_description")) for e in log])
        check(log[1]["t"] - log[0]["t"] < 3, "the retry was not at once")
        c = log[1]["claims"] or {}
        if st["state"] == "fresh":
            check(abs(c.get("iat", 0) - time.time()) < 30, "iat %r" %
                  c.get("iat"))
        time.sleep(0.5)
        d.alive()
        status, _, _ = d.http("GET", "/v1/status")
        check(status == 200, "the socket after a wild Date: %d" % status)
    test.__name__ = "test_refusal_with_%s_date" % label
    test.__doc__ = bad_date_case.__doc__.replace("this Date header",
                                                 "Date: %r" % date)
    return test


for _label, _date in (("no", ""), ("garbage", "yesterday, around noon"),
                      ("year_9999", "Fri, 31 Dec 9999 23:59:59 GMT"),
                      ("epoch", "Thu, 01 Jan 1970 00:00:00 GMT"),
                      ("overflowing", "Mon, 01 Jan 99999999999 00:00:00 GMT")):
    _fn = bad_date_case(_label, _date)
    globals()[_fn.__name__] = _fn


# -- logs and the status of other accounts ----------------------------------------

def test_status_without_key_and_no_secrets_in_logs(t):
    """An account with client_secret_basic shows client_auth basic and a
    null key_alg and key_thumbprint; a private_key_jwt one beside it at
    log_level debug leaves no key, assertion or token in the log (the
    harness scans for all of them), nor any PEM."""
    key = Key(t, "es", "EC")
    op = pkjwt_setup(t, {"ES256": key})
    iss = t.issuer({"clients": {"basic-client": "basic-secret-31415"},
                    "lifetime": 4})
    t.add_secret("basic-secret-31415")
    d = t.daemon()
    key_account(t, d, "pk", {
        "token_url": op.issuer + "/token", "client_id": pkjwt_client("ES256"),
        "client_auth": "private_key_jwt", "client_key_id": "kid-es256",
        "client_key_file": install_key(d, key)})
    key_account(t, d, "basic", {
        "token_url": iss.url("/token"), "client_id": "basic-client",
        "client_auth": "basic",
        "client_secret_file": d.write_secret("b.secret",
                                             "basic-secret-31415")})
    d.start()
    wait_log(d, lambda: token_entries(op, pkjwt_client("ES256")), ok_status,
             3, 30, "three tokens")
    st = listed(d, "basic")
    check(st.get("client_auth") == "basic" and st.get("key_alg") is None and
          "key_thumbprint" in st and st["key_thumbprint"] is None,
          "a basic account's status: %s" % {k: st.get(k) for k in (
              "client_auth", "key_alg", "key_thumbprint")})
    check_key_status(d, "pk", "private_key_jwt", "ES256", key)
    # nor in the state folder or the token files
    assertions = [x for x in op.secrets() if x.count(".") == 2]
    check(assertions, "the provider kept no assertions")
    for folder in (d.state_dir, t.out()):
        for f in os.listdir(folder):
            text = read_text(os.path.join(folder, f)) or ""
            check("-----BEGIN" not in text and not any(
                line in text for line in t.secrets if len(line) >= 40) and
                not any(a in text for a in assertions),
                "%s holds a key or an assertion" % f)
    text = d.log_text()
    check("-----BEGIN" not in text and "eyJ" not in text,
          "the log shows a key or a JWT")


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__))
