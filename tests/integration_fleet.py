#!/usr/bin/env python3
"""Fleet mode (issue 14): several real tokend instances share accounts
through a real Redis, against tests/issuer.py.

    python3 tests/integration_fleet.py --tokend build/tokend --tokenctl build/tokenctl
                                       [-k SUBSTRING] [-j N] [--timeout S] [--keep]
                                       [--wrapper CMD] [--list]

The harness, its options and its output are those of tests/integration.py
(one child process per test, the per-test secret scan of every daemon log,
the final `N passed, N failed, N skipped` line).  This file adds:

  * Redis: redis-server processes in the test's folder on free loopback
    ports (`save ""`, `appendonly no`, no daemonizing, killed at the end):
    a master with `requirepass`, optionally a replica (`replicaof`,
    `masterauth`) and three sentinels (quorum 2, down-after 1 s) watching
    the master with `sentinel auth-pass`.  A small RESP client (Resp) looks
    into Redis for the checks.
  * Fleet: one issuer, one Redis world, one fleet key (64 hex digits, 0600)
    and one Redis password file shared by every instance; Node: a tokend
    with its own tokend.conf carrying a [fleet] section (its own node =,
    state folder, accounts folder, socket and token files).  Every account
    sends `param.fleet_node = NODE`, so the issuer's log says which
    instance asked for each token.
  * Sampler: a thread that reads every instance's token files (JSON) all
    along and records any read that is empty, expired, not a token the
    issuer handed out, past the issuer's own expiry, or a token the test
    has marked as one that must never reach a file.

Every test is bounded by --timeout (default 180 s) and waits with deadlines.
The Redis password and the fleet key are test secrets: the secret scan
fails a test whose daemon log holds either.  Without redis-server (or,
for the failover test, redis-sentinel) the tests are skipped and say why.

Python standard library only.
"""

import hashlib
import json
import os
import re
import secrets as rnd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import integration  # noqa: E402  (the harness lives next door)
from integration import (  # noqa: E402
    Daemon, TestFailure, TestSkipped, check, ini_text, main, read_json,
    read_text, short, wait_for, write_file)

integration.TEST_TIMEOUT = 180     # several daemons, several lifetimes each

REDIS_SERVER = shutil.which("redis-server")       # Debian's redis-server
REDIS_SENTINEL = shutil.which("redis-sentinel")   # Debian's redis-sentinel

MASTER_NAME = "fleetmaster"
PREFIX = "tokend:"
LIFETIME = 8                 # expires_in of the test accounts
RATIO = 0.75                 # [refresh] ratio: a refresh 6 s into 8
INTERVAL = LIFETIME * RATIO  # seconds between two refreshes of an account
ACCOUNT_TIMEOUT = "3s"       # [account] timeout: the lease is lease + this
LEASE = "2s"
FLEET_TIMEOUT = "1s"

# the issuer's clients, one per account
CLIENTS = {
    "cc": ("fleet-cc", "fleet-cc-secret-7c1d5e"),        # client_credentials
    "rt": ("fleet-rt", "fleet-rt-secret-a93b02"),        # rotating refresh
    "solo": ("fleet-solo", "fleet-solo-secret-44e8f1"),  # not shared
}


def need_redis(sentinel=False):
    """Skip the test unless redis-server (and redis-sentinel) are here."""
    if not REDIS_SERVER:
        raise TestSkipped("no redis-server (apt-get install redis-server)")
    if sentinel and not REDIS_SENTINEL:
        raise TestSkipped("no redis-sentinel (apt-get install "
                          "redis-sentinel)")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# -- RESP ----------------------------------------------------------------------

class RespError(Exception):
    """An error reply (-ERR ...)."""


def resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Resp:
    """One connection to a Redis (or sentinel) on 127.0.0.1."""

    def __init__(self, port, password=None, timeout=2.0):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.f = self.sock.makefile("rb")
        if password is not None:
            self.call("AUTH", password)

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def call(self, *args):
        self.sock.sendall(resp_encode(args))
        value = self.read()
        if isinstance(value, RespError):
            raise value
        return value

    def read(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        raise ConnectionError("not RESP: %r" % line[:40])


def text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [text(v) for v in value]
    return value


# -- Redis processes -----------------------------------------------------------

class Redis:
    """One redis-server (or sentinel) process in the test's folder."""

    def __init__(self, t, name, password=None, replicaof=None, monitor=None):
        self.t = t
        self.name = name
        self.password = password     # requirepass / masterauth
        self.replicaof = replicaof   # a Redis to replicate
        self.monitor = monitor       # a Redis to watch: this is a sentinel
        self.port = free_port()
        self.dir = t.path(name)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.conf = os.path.join(self.dir, "redis.conf")
        self.log_path = t.path(name + ".log")
        self.proc = None
        self.stopped = False
        t.cleanups.append(self.kill)

    def config_text(self):
        lines = ["port %d" % self.port, "bind 127.0.0.1", "daemonize no",
                 'dir "%s"' % self.dir, 'logfile ""', "protected-mode no"]
        if self.monitor:
            m = self.monitor
            lines += ["sentinel monitor %s 127.0.0.1 %d 2" % (MASTER_NAME,
                                                             m.port),
                      "sentinel auth-pass %s %s" % (MASTER_NAME, m.password),
                      "sentinel down-after-milliseconds %s 1000" % MASTER_NAME,
                      "sentinel failover-timeout %s 6000" % MASTER_NAME,
                      "sentinel parallel-syncs %s 1" % MASTER_NAME]
            return "\n".join(lines) + "\n"
        lines += ['save ""', "appendonly no", "repl-diskless-sync yes",
                  "repl-diskless-sync-delay 0", "repl-ping-replica-period 1"]
        if self.password:
            lines += ["requirepass %s" % self.password,
                      "masterauth %s" % self.password]
        if self.replicaof:
            lines.append("replicaof 127.0.0.1 %d" % self.replicaof.port)
        return "\n".join(lines) + "\n"

    def start(self, wait=True):
        """Start with no data (nothing is ever saved)."""
        check(self.proc is None or self.proc.poll() is not None,
              "harness: %s started twice" % self.name)
        write_file(self.conf, self.config_text(), 0o600)
        if self.monitor:
            cmd = [REDIS_SENTINEL, self.conf] if REDIS_SENTINEL else \
                [REDIS_SERVER, self.conf, "--sentinel"]
        else:
            cmd = [REDIS_SERVER, self.conf]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log,
                                         cwd=self.dir)
        self.stopped = False
        if wait:
            self.wait_up()
        return self

    def wait_up(self, timeout=10):
        def up():
            if self.proc.poll() is not None:
                raise TestFailure("%s exited with %d: %s" % (
                    self.name, self.proc.returncode,
                    (read_text(self.log_path) or "")[-1500:]))
            try:
                return self.call("PING") == "PONG"
            except (OSError, ConnectionError, RespError):
                return False
        wait_for(up, timeout, "%s to answer PING" % self.name)

    def connect(self, timeout=2.0):
        return Resp(self.port, None if self.monitor else self.password,
                    timeout)

    def call(self, *args):
        with self.connect() as r:
            return r.call(*args)

    def info(self, section):
        out = {}
        for line in text(self.call("INFO", section)).splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                out[k] = v.strip()
        return out

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stopped = False

    def sigstop(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def addr(self):
        return "127.0.0.1:%d" % self.port


# -- one instance --------------------------------------------------------------

class Node(Daemon):
    """A tokend with a [fleet] section in its own tokend.conf."""

    def __init__(self, fleet, name, fleet_values):
        self.fleet = fleet
        self.fleet_values = fleet_values
        super().__init__(fleet.t, name)

    def write_global(self, extra=None, raw=None):
        if raw is None:
            values = {"accounts_dir": self.accounts_dir,
                      "state_dir": self.state_dir,
                      "socket": self.socket,
                      "log_level": "debug"}
            values.update(extra or {})
            sections = [("tokend", values)]
            if self.fleet_values is not None:
                sections.append(("fleet", self.fleet_values))
            raw = ini_text(sections)
        write_file(self.conf, raw)

    def token_file(self, account):
        return self.ctx.out("%s.%s.json" % (self.name, account))

    def token(self, account):
        """(access token, expires_at epoch) from the JSON file, or None."""
        doc = read_json(self.token_file(account))
        if doc is None:
            return None
        return doc.get("access_token"), integration.parse_rfc3339_utc(
            doc.get("expires_at"))

    def fleet_info(self):
        """GET /v1/fleet as a dict; None before the socket is there."""
        if not os.path.exists(self.socket):
            return None
        try:
            status, _, body = self.http("GET", "/v1/fleet", timeout=5)
        except (OSError, TestFailure):
            return None
        check(status == 200, "%s: GET /v1/fleet: %d %r" % (self.name, status,
                                                           body[:200]))
        return json.loads(body)

    def status_row(self, account):
        if not os.path.exists(self.socket):
            return None
        try:
            status, _, body = self.http("GET", "/v1/status", timeout=5)
        except (OSError, TestFailure):
            return None
        check(status == 200, "%s: GET /v1/status: %d" % (self.name, status))
        rows = [r for r in json.loads(body) if r.get("account") == account]
        return rows[0] if rows else None

    def metrics(self):
        status, _, body = self.http("GET", "/metrics", timeout=5)
        check(status == 200, "%s: GET /metrics: %d" % (self.name, status))
        return body.decode()

    def pid(self):
        return self.proc.pid

    def sigstop(self):
        self.alive()
        self.proc.send_signal(signal.SIGSTOP)

    def sigcont(self):
        self.proc.send_signal(signal.SIGCONT)


# -- the fleet -----------------------------------------------------------------

class Fleet:
    """An issuer, a Redis world, a fleet key and password, and nodes."""

    def __init__(self, t, replica=False, sentinels=False, lifetimes=None,
                 account_timeout=ACCOUNT_TIMEOUT):
        self.t = t
        self.account_timeout = account_timeout
        self.password = "redis-pw-" + rnd.token_hex(12)
        self.key = rnd.token_hex(32)
        t.add_secret(self.password, self.key)
        self.secret_dir = t.path("fleet-secrets")
        os.makedirs(self.secret_dir, mode=0o700, exist_ok=True)
        self.password_file = os.path.join(self.secret_dir, "redis.pass")
        write_file(self.password_file, self.password + "\n", 0o600)
        self.key_file = os.path.join(self.secret_dir, "fleet.key")
        write_file(self.key_file, self.key + "\n", 0o600)

        self.master = Redis(t, "redis-master", password=self.password)
        self.replica = Redis(t, "redis-replica", password=self.password,
                             replicaof=self.master) if replica else None
        self.sentinels = [Redis(t, "sentinel%d" % i, monitor=self.master)
                          for i in range(1, 4)] if sentinels else []
        lifetimes = dict(lifetimes or {})
        self.lifetimes = {name: lifetimes.get(name, LIFETIME)
                          for name in CLIENTS}
        self.iss = t.issuer({
            "clients": {cid: sec for cid, sec in CLIENTS.values()},
            "lifetime": LIFETIME,
            "client_lifetimes": {CLIENTS[n][0]: life
                                 for n, life in self.lifetimes.items()},
            "refresh_tokens": True, "rotate": True})
        self.nodes = []
        self.initial_rt = None

    # Redis
    def start_redis(self):
        self.master.start()
        if self.replica:
            self.replica.start()
            wait_for(lambda: self.replica.info("replication").get(
                "master_link_status") == "up", 15,
                "the replica to sync with the master")
        for s in self.sentinels:
            s.start()
        if self.sentinels:
            def watching():
                for s in self.sentinels:
                    try:
                        m = dict(zip(*[iter(text(s.call(
                            "SENTINEL", "master", MASTER_NAME)))] * 2))
                    except (OSError, ConnectionError, RespError):
                        return False
                    if int(m.get("num-other-sentinels", 0)) != 2 or \
                            int(m.get("num-slaves", 0)) != 1 or \
                            "s_down" in m.get("flags", ""):
                        return False
                return True
            wait_for(watching, 30, "three sentinels to see each other and "
                     "the replica")
        return self

    def redis_url(self, via="redis"):
        if via == "sentinel":
            return "sentinel://%s/%s" % (",".join(s.addr() for s in
                                                  self.sentinels),
                                         MASTER_NAME)
        return "redis://127.0.0.1:%d/0" % self.master.port

    def current_master(self):
        """The Redis that is master now (after a failover, the replica)."""
        for r in (self.master, self.replica):
            if r is None or not r.running() or r.stopped:
                continue
            try:
                if r.info("replication").get("role") == "master":
                    return r
            except (OSError, ConnectionError, RespError):
                continue
        return None

    def redis(self):
        """A RESP connection to the current master."""
        m = self.current_master()
        check(m is not None, "no Redis master is up")
        return m.connect()

    def sentinel_master(self):
        """(host, port) the sentinels name as the master, by majority."""
        seen = {}
        for s in self.sentinels:
            try:
                hp = tuple(text(s.call("SENTINEL", "get-master-addr-by-name",
                                       MASTER_NAME)) or ())
            except (OSError, ConnectionError, RespError):
                continue
            seen[hp] = seen.get(hp, 0) + 1
        best = max(seen.items(), key=lambda kv: kv[1]) if seen else None
        return best[0] if best and best[1] >= 2 else None

    # instances
    def fleet_values(self, node, via="redis", **over):
        values = {"redis": self.redis_url(via),
                  "password_file": self.password_file,
                  "key_file": self.key_file, "node": node,
                  "key_prefix": PREFIX, "lease": LEASE,
                  "timeout": FLEET_TIMEOUT}
        values.update(over)
        return values

    def issue_initial_rt(self):
        if self.initial_rt is None:
            out = self.iss.ctl("POST", "issue_refresh",
                               {"client_id": CLIENTS["rt"][0]})
            self.initial_rt = out["refresh_token"]
        return self.initial_rt

    def account_sections(self, node, name, shared=True, timeout=None):
        cid, secret = CLIENTS[name]
        account = {"grant": "client_credentials", "token_url": self.iss.url(),
                   "client_id": cid,
                   "client_secret_file": node.write_secret(name + ".secret",
                                                           secret),
                   "client_auth": "basic", "ca_file": self.t.ca,
                   "timeout": timeout or self.account_timeout,
                   "param.fleet_node": node.name,
                   "shared": "yes" if shared else None}
        if name == "rt":
            account["grant"] = "refresh_token"
            account["refresh_token_file"] = node.write_secret(
                "rt.initial", self.issue_initial_rt())
        return [("account", account),
                ("refresh", {"margin": "1s", "ratio": str(RATIO),
                             "jitter": "0", "min_backoff": "1s",
                             "max_backoff": "4s"}),
                ("file", {"path": node.token_file(name), "format": "json",
                          "mode": "0600"})]

    def node(self, name, accounts=("cc",), via="redis", fleet=None,
             solo=()):
        """A new instance (not started); fleet: overrides for [fleet], or
        False for none at all."""
        values = None if fleet is False else \
            self.fleet_values(name, via, **(fleet or {}))
        n = Node(self, name, values)
        self.t.daemons.append(n)
        for a in accounts:
            n.write_account(a, self.account_sections(n, a))
        for a in solo:
            n.write_account(a, self.account_sections(n, a, shared=False))
        self.nodes.append(n)
        return n

    def nodes_up(self, count, accounts=("cc",), via="redis", start=True):
        out = [self.node("node%d" % (len(self.nodes) + 1), accounts, via)
               for _ in range(count)]
        if start:
            for n in out:
                n.start()
        return out

    # waiting
    def alive(self):
        for n in self.nodes:
            n.alive()

    def wait(self, predicate, timeout, what):
        return wait_for(predicate, timeout, what, alive=self.alive)

    def wait_joined(self, nodes, members=None, timeout=30):
        members = len(nodes) if members is None else members

        def joined():
            for n in nodes:
                info = n.fleet_info()
                if not info or info.get("connected") is not True or \
                        info.get("members") != members:
                    return False
            return True
        try:
            self.wait(joined, timeout, "%s to be connected with %d members"
                      % (", ".join(n.name for n in nodes), members))
        except TestFailure as e:
            raise TestFailure("%s; /v1/fleet: %s" % (e, {
                n.name: n.fleet_info() for n in nodes}))

    def ok(self, account, log=None, since=None):
        """The issuer's good answers for an account, oldest first."""
        cid = CLIENTS[account][0]
        return [e for e in self.iss.ok_entries(log)
                if e["client_id"] == cid and
                (since is None or e["t"] >= since)]

    def requests(self, account, log=None, since=None):
        cid = CLIENTS[account][0]
        return [e for e in (log if log is not None else self.iss.log())
                if e.get("client_id") == cid and
                (since is None or e["t"] >= since)]

    def latest(self, account):
        got = self.ok(account)
        return got[-1]["issued_access_token"] if got else None

    def wait_in_sync(self, nodes, accounts, timeout=30):
        """Every node's file holds the issuer's newest token."""
        def synced():
            log = self.iss.log()
            for a in accounts:
                got = self.ok(a, log)
                if not got:
                    return False
                newest = got[-1]["issued_access_token"]
                for n in nodes:
                    tok = n.token(a)
                    if not tok or tok[0] != newest:
                        return False
            return True
        try:
            self.wait(synced, timeout, "%s to hold the newest %s tokens" % (
                ", ".join(n.name for n in nodes), "/".join(accounts)))
        except TestFailure as e:
            raise TestFailure("%s; files: %s" % (e, {
                n.name: {a: short((n.token(a) or (None,))[0])
                         for a in accounts} for n in nodes}))

    def wait_just_refreshed(self, accounts, nodes, timeout=None):
        """Wait for the accounts' next refreshes to reach every node: a
        quiet stretch of about INTERVAL lies ahead (the accounts started
        together, so they refresh together)."""
        if isinstance(accounts, str):
            accounts = [accounts]
        before = {a: len(self.ok(a)) for a in accounts}
        self.wait(lambda: all(len(self.ok(a)) > before[a] for a in accounts),
                  timeout or INTERVAL + 10, "a refresh of %s" %
                  " and ".join(accounts))
        self.wait_in_sync(nodes, accounts)

    def leader(self, account, nodes):
        """The node that leads the account, as every node agrees."""
        def agreed():
            names = set()
            leading = []
            for n in nodes:
                row = n.status_row(account)
                if not row or "leader" not in row:
                    return None
                names.add(row.get("leader"))
                if row.get("leading") is True:
                    leading.append(n)
            if len(names) != 1 or None in names or len(leading) != 1 or \
                    leading[0].name not in names:
                return None
            return leading[0]
        try:
            return self.wait(agreed, 15, "the nodes to agree on one leader "
                             "of %s" % account)
        except TestFailure as e:
            raise TestFailure("%s: %s" % (e, {
                n.name: {k: (n.status_row(account) or {}).get(k)
                         for k in ("leader", "leading", "shared")}
                for n in nodes}))


def node_of(entry):
    return (entry.get("params") or {}).get("fleet_node")


def no_reuse(fleet, account="rt"):
    """No refresh token was sent twice, and none was refused."""
    seen = {}
    for i, e in enumerate(fleet.requests(account)):
        rt = e.get("refresh_token_used")
        if e.get("grant_type") == "refresh_token" and rt:
            check(rt not in seen, "refresh token %s used twice: by %s "
                  "(request %d) and by %s (request %d)" % (
                      short(rt), node_of(seen.get(rt, (None, {}))[1]),
                      seen.get(rt, (0,))[0], node_of(e), i))
            seen[rt] = (i, e)
        check(e.get("status") == 200, "%s request %d from %s was answered "
              "%s (grant %s, refresh token %s)" % (
                  account, i, node_of(e), e.get("status"),
                  e.get("grant_type"), short(rt)))


def check_spacing(fleet, account, since=None, until=None, what=""):
    """One request per refresh interval: no two of the account's good
    answers closer than half an interval."""
    got = [e for e in fleet.ok(account, since=since)
           if until is None or e["t"] <= until]
    for a, b in zip(got, got[1:]):
        check(b["t"] - a["t"] >= INTERVAL / 2,
              "%s: %s asked for a token %.2fs after %s did (a refresh is "
              "due every %.1fs)%s: %s" % (
                  account, node_of(b), b["t"] - a["t"], node_of(a),
                  INTERVAL, what, [(round(e["t"] - got[0]["t"], 2),
                                    node_of(e)) for e in got]))
    return got


# -- the file sampler ----------------------------------------------------------

class Sampler(threading.Thread):
    """Reads every watched node's token files every ~100 ms; each read must
    be a token the issuer issued, not expired by its expires_at nor by the
    issuer's clock, and not a forbidden (stale) token."""

    def __init__(self, fleet, nodes, accounts, require=True):
        super().__init__(daemon=True)
        self.fleet = fleet
        self.watch = {n.name: n for n in nodes}
        self.accounts = list(accounts)
        self.require = require      # a missing file is a problem too
        self.forbidden = set()
        self.problems = []
        self.reads = 0
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def exclude(self, node):
        with self.lock:
            self.watch.pop(node.name, None)

    def include(self, node):
        with self.lock:
            self.watch[node.name] = node

    def forbid(self, token):
        with self.lock:
            self.forbidden.add(token)

    def problem(self, msg):
        with self.lock:
            if len(self.problems) < 20:
                self.problems.append(msg)

    def run(self):
        while not self.halt.wait(0.1):
            try:
                self.sample()
            except Exception as e:     # the issuer going away at the end
                if not self.halt.is_set():
                    self.problem("sampler: %r" % e)

    def sample(self):
        with self.lock:
            nodes = list(self.watch.values())
            forbidden = set(self.forbidden)
        reads = []
        for n in nodes:
            for a in self.accounts:
                try:
                    tok = n.token(a)
                except TestFailure as e:
                    self.problem("%s %s: %s" % (n.name, a, e))
                    continue
                reads.append((n.name, a, tok, time.time()))
        log = self.fleet.iss.log()      # after the reads: holds their tokens
        issued = {e["issued_access_token"]: e
                  for e in self.fleet.iss.ok_entries(log)}
        for name, a, tok, when in reads:
            self.reads += 1
            if tok is None:
                if self.require:
                    self.problem("%s: no %s token file at %.1f" % (
                        name, a, when))
                continue
            token, expires_at = tok
            if not token:
                self.problem("%s: an empty %s token" % (name, a))
            elif token in forbidden:
                self.problem("%s: the %s file holds the stale token %s" % (
                    name, a, short(token)))
            elif token not in issued:
                self.problem("%s: the %s file holds %s, which the issuer "
                             "never issued" % (name, a, short(token)))
            else:
                e = issued[token]
                real_expiry = e["t"] + self.fleet.lifetimes[a]
                # expires_at is in whole seconds: up to one early
                if when >= real_expiry or when >= expires_at + 1:
                    self.problem("%s: the %s file holds an expired token %s "
                                 "(issued %.1fs before the read)" % (
                                     name, a, short(token), when - e["t"]))

    def stop(self):
        self.halt.set()
        self.join(5)

    def verdict(self):
        self.stop()
        check(self.reads > 0, "the sampler read nothing")
        check(not self.problems, "token files: " + "; ".join(self.problems))


def run_for(fleet, seconds, sampler=None):
    """Let the fleet run for a while (a window to count requests in),
    watching the daemons and the sampler all along."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fleet.alive()
        if sampler is not None and sampler.problems:
            sampler.verdict()
        time.sleep(0.2)


def grep_log(node, needle):
    return needle in node.log_text()


def proc_cmdlines():
    """Every process's command line (bytes)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                out.append((pid, f.read()))
        except OSError:
            continue
    return out


# -- the tests -----------------------------------------------------------------

def fleet_harness(t):
    """The Redis world itself, without tokend: the master wants its
    password, the replica follows it, the three sentinels see each other and
    promote the replica when the master dies."""
    need_redis(sentinel=True)
    f = Fleet(t, replica=True, sentinels=True).start_redis()
    with Resp(f.master.port) as r:
        try:
            r.call("GET", "x")
            raise TestFailure("the master answered without a password")
        except RespError as e:
            check("NOAUTH" in str(e), "unexpected refusal: %s" % e)
    with f.master.connect() as r:
        r.call("SET", "harness:probe", "1")
    wait_for(lambda: f.replica.call("GET", "harness:probe") == b"1", 5,
             "the replica to copy a key")
    check(f.sentinel_master() == ("127.0.0.1", str(f.master.port)),
          "sentinels name %s as master" % (f.sentinel_master(),))
    f.master.kill()
    wait_for(lambda: f.sentinel_master() == ("127.0.0.1",
                                             str(f.replica.port)),
             30, "the sentinels to promote the replica")
    wait_for(lambda: f.replica.info("replication").get("role") == "master",
             15, "the replica to become master")


def fleet_one_request_per_lifetime(t):
    """Five instances share a client_credentials and a rotating refresh
    token account: the issuer sees about one request per account per
    refresh interval (not five), every instance's files hold a current
    token at every read, status, /v1/fleet and /metrics tell the fleet's
    health, and Redis holds only ciphertext."""
    need_redis()
    f = Fleet(t).start_redis()
    accounts = ("cc", "rt")
    nodes = f.nodes_up(5, accounts)
    f.wait_joined(nodes, timeout=30)
    f.wait_in_sync(nodes, accounts, timeout=30)
    sampler = Sampler(f, nodes, accounts)
    sampler.start()
    t0 = time.time()
    window = 3 * LIFETIME
    run_for(f, window, sampler)
    for a in accounts:
        got = check_spacing(f, a, what=" (5 instances)")
        inside = [e for e in got if e["t"] >= t0 and e["t"] <= t0 + window]
        most = int(window / INTERVAL) + 1
        check(1 <= len(inside) <= most,
              "%s: %d token requests in %ds (one every %.1fs expected: at "
              "most %d)" % (a, len(inside), window, INTERVAL, most))
    no_reuse(f)
    sampler.verdict()

    # who leads, as each instance tells it
    leaders = {a: f.leader(a, nodes) for a in accounts}
    infos = {n.name: n.fleet_info() for n in nodes}
    for name, info in infos.items():
        check(info["connected"] is True and info["members"] == 5 and
              info["node"] == name and info["shared"] == 2,
              "%s: /v1/fleet %s" % (name, info))
        check(info["redis"] and info["master"] and
              str(f.master.port) in info["master"],
              "%s: /v1/fleet names redis %r, master %r" % (
                  name, info["redis"], info["master"]))
    check(sum(i["leading"] for i in infos.values()) == 2,
          "the nodes lead %d accounts between them, not 2: %s" % (
              sum(i["leading"] for i in infos.values()), infos))
    for a, lead in leaders.items():
        check(infos[lead.name]["leading"] >= 1, "%s leads %s but its "
              "/v1/fleet says leading %d" % (lead.name, a,
                                             infos[lead.name]["leading"]))
    n = nodes[2]
    res = n.tokenctl("status")
    first = res.stdout.splitlines()[0] if res.stdout else ""
    check(re.match(r"fleet: node3, connected to 127\.0\.0\.1:%d, 5 members, "
                   r"leading \d of 2 shared" % f.master.port, first),
          "tokenctl status's first line: %r (exit %d, stderr %r)" % (
              first, res.returncode, res.stderr))
    lines = res.stdout.splitlines()
    head = [line.split() for line in lines if line.startswith("ACCOUNT")]
    col = head[0].index("LEADER") if head and "LEADER" in head[0] else None
    for a, lead in leaders.items():
        rows = [line for line in lines if re.match(r"\s*%s\b" % a, line)]
        # "leader NODE" in the row, or a LEADER column
        shown = rows and (("leader %s" % lead.name) in rows[0] or (
            col is not None and rows[0].split()[col:col + 1] == [lead.name]))
        check(shown, "tokenctl status does not show leader %s for %s:\n%s"
              % (lead.name, a, res.stdout))
    res = n.tokenctl("fleet")
    check(res.returncode == 0 and "node3" in res.stdout,
          "tokenctl fleet: exit %d, %r %r" % (res.returncode, res.stdout,
                                               res.stderr))
    metrics = n.metrics()
    for line in ("tokend_fleet_connected 1", "tokend_fleet_members 5",
                 "tokend_fleet_shared_accounts 2"):
        check(re.search("^%s$" % re.escape(line), metrics, re.M),
              "/metrics lacks %r" % line)
    check(re.search(r'^tokend_account_leading\{account="cc"\} [01]$',
                    metrics, re.M), "/metrics lacks tokend_account_leading "
          "for cc")
    # the fleet's alert rules ask for what a fleet daemon exports
    import integration_lifecycle as lc
    fleet_problems = [p for p in lc.rules_problems(
        lc.read_text(lc.RULES), lc.parse_metrics(metrics))
        if p.startswith("TokendFleet")]
    check(not fleet_problems, "the fleet's alert rules ask for what "
          "/metrics lacks: %s" % "; ".join(fleet_problems))
    check(any(name.startswith("TokendFleet") for name, _, _ in
              lc.alert_rules(lc.read_text(lc.RULES))),
          "no fleet alert rules to check")

    # Redis: members, records, and nothing in clear
    with f.redis() as r:
        members = text(r.call("ZRANGE", PREFIX + "members", 0, -1))
        check(sorted(members) == ["node%d" % i for i in range(1, 6)],
              "members in Redis: %s" % members)
        secrets = [s for s in f.iss.secrets() if len(s) >= 6] + \
            [f.key, f.password]
        keys = text(r.call("KEYS", PREFIX + "*"))
        for a in accounts:
            check(PREFIX + "token:" + a in keys, "no %stoken:%s in Redis: "
                  "%s" % (PREFIX, a, keys))
            rec = dict(zip(*[iter(text(r.call(
                "HGETALL", PREFIX + "token:" + a)))] * 2))
            check(rec.get("v", "").startswith("v1."), "token:%s v is not "
                  "sealed: %r" % (a, rec.get("v", "")[:20]))
        check(rec.get("r") == "1", "token:rt does not say it holds a "
              "refresh token: %s" % {k: v for k, v in rec.items()
                                     if k != "v"})
        dump = []
        for k in keys:
            kind = r.call("TYPE", k)
            if kind == "string":
                dump.append(r.call("GET", k))
            elif kind == "hash":
                dump.extend(r.call("HGETALL", k))
            elif kind == "zset":
                dump.extend(r.call("ZRANGE", k, 0, -1))
        blob = b"\n".join(x for x in dump if isinstance(x, bytes))
        for s in secrets:
            check(s.encode() not in blob, "Redis holds a secret in clear: "
                  "%s..." % s[:8])


def fleet_leader_kill9(t):
    """kill -9 the leader of a rotating refresh token account just after a
    refresh: another instance takes over before the token expires (no file
    ever holds an expired token), and no refresh token is used twice."""
    need_redis()
    f = Fleet(t).start_redis()
    accounts = ("rt", "cc")
    nodes = f.nodes_up(4, accounts)
    f.wait_joined(nodes)
    f.wait_in_sync(nodes, accounts)
    sampler = Sampler(f, nodes, accounts)
    sampler.start()
    f.wait_just_refreshed(accounts, nodes)
    lead = f.leader("rt", nodes)
    killed_at = time.time()
    lead.kill9()
    sampler.exclude(lead)
    rest = [n for n in nodes if n is not lead]
    f.wait(lambda: len(f.ok("rt", since=killed_at)) >= 2, 3 * LIFETIME,
           "two refreshes of rt after the leader was killed")
    f.wait_in_sync(rest, accounts)
    after = f.ok("rt", since=killed_at)
    check(all(node_of(e) != lead.name for e in after),
          "the killed %s still asked?" % lead.name)
    check(after[0]["t"] - killed_at < LIFETIME,
          "the first refresh came %.1fs after the kill, the token lives "
          "%ds" % (after[0]["t"] - killed_at, LIFETIME))
    new = f.leader("rt", rest)
    check(new is not lead, "still led by the dead node")
    f.wait_joined(rest, members=3, timeout=15)
    check_spacing(f, "rt")
    check_spacing(f, "cc")
    no_reuse(f)
    sampler.verdict()


def fleet_leader_sigstop(t):
    """SIGSTOP the leader of a rotating account for longer than its lease:
    another instance takes over in time; after SIGCONT the old leader
    catches up from the fleet and never sends its old refresh token."""
    need_redis()
    f = Fleet(t).start_redis()
    accounts = ("rt",)
    nodes = f.nodes_up(3, accounts)
    f.wait_joined(nodes)
    f.wait_in_sync(nodes, accounts)
    sampler = Sampler(f, nodes, accounts)
    sampler.start()
    f.wait_just_refreshed(accounts, nodes)
    lead = f.leader("rt", nodes)
    rest = [n for n in nodes if n is not lead]
    stopped_at = time.time()
    lead.sigstop()
    t.cleanups.append(lead.sigcont)
    sampler.exclude(lead)
    try:
        f.wait(lambda: [e for e in f.ok("rt", since=stopped_at)
                        if node_of(e) != lead.name], LIFETIME + 5,
               "another node to refresh rt while %s is stopped" % lead.name)
        f.wait_in_sync(rest, accounts)
        new = f.leader("rt", rest)
        check(new is not lead, "rest still names the stopped node")
    finally:
        lead.sigcont()
    resumed_at = time.time()
    f.wait_joined(nodes, timeout=20)
    f.wait(lambda: len(f.ok("rt", since=resumed_at)) >= 1, LIFETIME + 5,
           "a refresh after SIGCONT")
    f.wait_in_sync(nodes, accounts)
    sampler.include(lead)
    f.wait(lambda: len(f.ok("rt", since=resumed_at)) >= 2, LIFETIME + 5,
           "a second refresh after SIGCONT")
    f.wait_in_sync(nodes, accounts)
    no_reuse(f)
    check_spacing(f, "rt")
    sampler.verdict()


def fleet_fence_stale_leader(t):
    """A leader stalls (SIGSTOP) with its request in flight (the issuer
    answers 2 s late) and falls behind a new leader: when it comes back with
    its answer, the fence refuses its publish (publish_failures, "refused
    by the fence") and no instance's file ever holds its stale token.

    The lease outlives the request's timeout by design (PX = lease +
    timeout), so a stall inside the request cannot outlast the lease while
    the request is still alive; the test deletes the lease in Redis, as its
    running out would, so that a new leader gets in while the stalled one's
    answer is still coming."""
    need_redis()
    life = 16
    f = Fleet(t, lifetimes={"cc": life}, account_timeout="10s").start_redis()
    nodes = f.nodes_up(3, ("cc",))
    f.wait_joined(nodes)
    f.wait_in_sync(nodes, ["cc"])
    sampler = Sampler(f, nodes, ["cc"])
    sampler.start()
    lead = f.leader("cc", nodes)
    rest = [n for n in nodes if n is not lead]
    before = len(f.ok("cc"))
    f.iss.faults("/token", [{"delay": 2.0}])

    def in_flight():
        for e in f.requests("cc"):
            if (e.get("fault") or {}).get("delay"):
                return e
        return None
    entry = f.wait(in_flight, life + 5, "the leader's delayed refresh")
    lead.sigstop()
    t.cleanups.append(lead.sigcont)
    sampler.exclude(lead)
    check(node_of(entry) == lead.name, "the delayed request came from %s, "
          "the leader is %s" % (node_of(entry), lead.name))
    stale = entry["issued_access_token"]
    sampler.forbid(stale)
    with f.redis() as r:
        r.call("DEL", PREFIX + "lease:cc")
    try:
        f.wait(lambda: [e for e in f.ok("cc", since=entry["t"] + 0.01)
                        if node_of(e) != lead.name], 10,
               "another node to get a new cc token")
        f.wait_in_sync(rest, ["cc"], timeout=10)
    finally:
        lead.sigcont()
    newest = f.ok("cc")[-1]["issued_access_token"]
    check(newest != stale, "harness: the newest token is the stale one")
    sampler.include(lead)       # from now on its files must not go stale
    f.wait(lambda: (lead.token("cc") or (None,))[0] in (newest, stale), 10,
           "%s to take a token after SIGCONT" % lead.name)
    run_for(f, 3, sampler)      # its late answer has come by now
    for n in nodes:
        check(n.token("cc")[0] != stale, "%s's file holds the stale token "
              "(its /v1/fleet: %s)" % (n.name, n.fleet_info()))
    f.wait_in_sync(nodes, ["cc"], timeout=10)
    info = lead.fleet_info()
    # Publishing comes before the files: a refused token is never taken
    # (the log's "new token fp:..." is said once files and state are
    # written; the fingerprint is SHA-256's first 4 bytes).  A poll cannot
    # see a file that holds the stale token for a millisecond; the log can.
    fp = "fp:" + hashlib.sha256(stale.encode()).hexdigest()[:8]
    took = [line for line in lead.log_text().splitlines()
            if "new token %s" % fp in line]
    check(not took, "%s wrote the stale token to its files and state before "
          "its publish was refused: %r" % (lead.name, took))
    check(info["publish_failures"] > 0 and
          grep_log(lead, "refused by the fence"),
          "%s did not count a refused publish and log \"refused by the "
          "fence\"; its /v1/fleet: %s" % (lead.name, info))
    check(len(f.ok("cc")) >= before + 2, "harness: too few requests")
    sampler.verdict()


def fleet_redis_sigstop(t):
    """Redis stalls (SIGSTOP) for longer than a lifetime: every instance
    keeps a valid client_credentials token, fetching it on its own (and
    saying so); the rotating account is not refreshed by two instances, and
    resumes once Redis is back, with nothing lost."""
    need_redis()
    f = Fleet(t).start_redis()
    accounts = ("cc", "rt")
    nodes = f.nodes_up(3, accounts)
    f.wait_joined(nodes)
    f.wait_in_sync(nodes, accounts)
    sampler = Sampler(f, nodes, ["cc"])
    sampler.start()
    f.wait_just_refreshed(accounts, nodes)
    stopped_at = time.time()
    f.master.sigstop()
    try:
        run_for(f, LIFETIME + 4, sampler)
        for n in nodes:
            check(grep_log(n, "the fleet is unreachable; refreshing on its "
                           "own"), "%s never said it refreshes cc on its "
                  "own" % n.name)
            info = n.fleet_info()
            check(info and info["connected"] is False,
                  "%s: /v1/fleet during the stall: %s" % (n.name, info))
    finally:
        f.master.sigcont()
    resumed_at = time.time()
    check([e for e in f.ok("cc", since=stopped_at)], "no cc token while "
          "Redis was stopped")
    f.wait_joined(nodes, timeout=20)
    f.wait(lambda: f.ok("rt", since=resumed_at), LIFETIME + 10,
           "rt to refresh after Redis came back")
    f.wait_in_sync(nodes, accounts, timeout=20)
    for n in nodes:
        row = n.status_row("rt")
        check(row and row["state"] == "fresh", "%s: rt is %s" % (
            n.name, row))
    no_reuse(f)
    during = [e for e in f.ok("rt") if stopped_at < e["t"] < resumed_at]
    check(not during, "rt refreshed while Redis was stopped: %s" % [
        node_of(e) for e in during])
    sampler.verdict()


def fleet_sentinel_failover(t):
    """Through the sentinels: kill -9 the master; the sentinels promote the
    replica, the instances follow (/v1/fleet's master changes, connected
    again) and refreshes go on at one request per interval."""
    need_redis(sentinel=True)
    f = Fleet(t, replica=True, sentinels=True).start_redis()
    accounts = ("cc", "rt")
    nodes = f.nodes_up(3, accounts, via="sentinel")
    f.wait_joined(nodes)
    f.wait_in_sync(nodes, accounts)
    for n in nodes:
        info = n.fleet_info()
        check(info["master"] and str(f.master.port) in info["master"],
              "%s: /v1/fleet master %r, the master is %s" % (
                  n.name, info["master"], f.master.addr()))
    sampler = Sampler(f, nodes, ["cc"])
    sampler.start()
    f.wait_just_refreshed(accounts, nodes)
    killed_at = time.time()
    f.master.kill()
    wait_for(lambda: f.sentinel_master() == ("127.0.0.1",
                                             str(f.replica.port)),
             30, "the sentinels to promote the replica", alive=f.alive)

    def followed():
        for n in nodes:
            info = n.fleet_info()
            if not info or not info["connected"] or not info["master"] or \
                    str(f.replica.port) not in info["master"]:
                return False
        return True
    try:
        f.wait(followed, 30, "every node to follow the new master")
    except TestFailure as e:
        raise TestFailure("%s: %s" % (e, {n.name: n.fleet_info()
                                          for n in nodes}))
    back_at = time.time()
    f.wait_joined(nodes, timeout=15)
    f.wait(lambda: len(f.ok("cc", since=back_at)) >= 2 and
           len(f.ok("rt", since=back_at)) >= 2, 3 * LIFETIME,
           "two refreshes of each account after the failover")
    f.wait_in_sync(nodes, accounts)
    check_spacing(f, "cc", since=back_at, what=" after the failover")
    check_spacing(f, "rt", what=" (the failover took %.1fs)" % (
        back_at - killed_at))
    no_reuse(f)
    for n in nodes:
        check(n.fleet_info()["reconnects"] >= 1, "%s counts no reconnect" %
              n.name)
    sampler.verdict()


def fleet_wrong_password(t):
    """An instance with the wrong Redis password: a clear error in the log,
    in /v1/fleet and from `tokenctl fleet` (exit 1); the password is never
    in a log, a command line or an error; tokend goes on serving its
    non-shared account."""
    need_redis()
    f = Fleet(t).start_redis()
    wrong = "wrong-redis-pw-" + rnd.token_hex(10)
    t.add_secret(wrong)
    wrong_file = os.path.join(f.secret_dir, "wrong.pass")
    write_file(wrong_file, wrong + "\n", 0o600)
    n = f.node("node1", accounts=("cc",), solo=("solo",),
               fleet={"password_file": wrong_file})
    n.start()
    n.wait_for(lambda: grep_log(n, "Redis refused the password"), 15,
               "\"Redis refused the password\" in the log")
    n.wait_for(lambda: (n.token("solo") or (None,))[0] ==
               f.latest("solo"), 15, "the non-shared account's token")
    status, _, body = n.http("GET", "/v1/token/solo")
    check(status == 200 and body.decode() == f.latest("solo"),
          "GET /v1/token/solo: %d" % status)
    info = n.fleet_info()
    check(info["connected"] is False and "password" in info["last_error"],
          "/v1/fleet: %s" % info)
    res = n.tokenctl("fleet")
    out = res.stdout + res.stderr
    check(res.returncode == 1, "tokenctl fleet exits %d: %r" % (
        res.returncode, out))
    check("password" in out, "tokenctl fleet does not say the password "
          "was refused: %r" % out)
    res2 = n.tokenctl("status")
    out2 = res2.stdout + res2.stderr
    check(re.search(r"^fleet: node1, not connected: ", out2, re.M),
          "tokenctl status's fleet line: %r" % out2[:300])
    n.alive()
    metrics = n.metrics()
    for pw in (wrong, f.password):
        for text_ in (out, out2, json.dumps(info), metrics):
            check(pw not in text_, "a Redis password is shown")
        for pid, cmd in proc_cmdlines():
            check(pw.encode() not in cmd, "process %s has a Redis password "
                  "on its command line" % pid)
    n.alive()
    check(grep_log(n, "error: fleet: Redis refused the password"),
          "\"Redis refused the password\" is not logged as an error")


def fleet_wrong_key(t):
    """An instance with another fleet key: a clear error naming the fleet
    key, it does not join (the others count their own members only), it
    never writes a garbage token, and no key shows in a log."""
    need_redis()
    f = Fleet(t).start_redis()
    good = f.nodes_up(3, ("cc",))
    f.wait_joined(good)
    f.wait_in_sync(good, ["cc"])
    other_key = rnd.token_hex(32)
    t.add_secret(other_key)
    other_file = os.path.join(f.secret_dir, "other.key")
    write_file(other_file, other_key + "\n", 0o600)
    bad = f.node("node4", accounts=("cc",), fleet={"key_file": other_file})
    sampler = Sampler(f, good + [bad], ["cc"], require=False)
    sampler.start()
    bad.start()
    bad.wait_for(lambda: grep_log(bad, "the fleet key differs"), 15,
                 "\"the fleet key differs\" in node4's log")
    res = bad.tokenctl("fleet")
    out = res.stdout + res.stderr
    check(res.returncode == 1 and "fleet key" in out,
          "tokenctl fleet on node4: exit %d, %r" % (res.returncode, out))
    run_for(f, 6, sampler)    # three leases: node4 would have joined
    with f.redis() as r:
        members = sorted(text(r.call("ZRANGE", PREFIX + "members", 0, -1)))
    check(members == ["node1", "node2", "node3"], "members in Redis: %s" %
          members)
    for n in good:
        info = n.fleet_info()
        check(info["members"] == 3, "%s counts %d members" % (
            n.name, info["members"]))
    info = bad.fleet_info()
    check(info["connected"] is False and "fleet key" in info["last_error"],
          "node4's /v1/fleet: %s" % info)
    for n in good + [bad]:
        for k in (f.key, other_key):
            check(k not in (n.tokenctl("fleet").stdout + json.dumps(
                n.fleet_info())), "a fleet key is shown by %s" % n.name)
    sampler.verdict()
    check(grep_log(bad, "error: fleet: the fleet key differs"),
          "\"the fleet key differs\" is not logged as an error")


def fleet_redis_restarted_empty(t):
    """The single Redis dies and comes back empty: the instances reconnect
    and re-seed it from the leaders' state (the token records, with the
    refresh token, are back) without asking the issuer for anything beyond
    the normal schedule."""
    need_redis()
    f = Fleet(t).start_redis()
    accounts = ("cc", "rt")
    nodes = f.nodes_up(3, accounts)
    f.wait_joined(nodes)
    f.wait_in_sync(nodes, accounts)
    sampler = Sampler(f, nodes, accounts)
    sampler.start()
    f.wait_just_refreshed(accounts, nodes)
    killed_at = time.time()
    f.master.kill()
    f.master.start()
    with f.redis() as r:
        # the instances may re-seed it within milliseconds: what it loaded
        # at start tells an empty restart, not what it holds now
        info = r.call("INFO", "persistence")
        if isinstance(info, bytes):
            info = info.decode()
        check("rdb_last_load_keys_loaded:0" in info,
              "harness: Redis came back with data: %s" % info)

    def reseeded():
        with f.redis() as r:
            return all(r.call("EXISTS", PREFIX + "token:" + a) == 1
                       for a in accounts)
    f.wait(reseeded, 15, "the token records to be back in Redis")
    seeded_at = time.time()

    # each instance reconnects after its own backoff: a follower's record
    # (no refresh token) may come first, the leader's then wins over it
    def has_rt():
        with f.redis() as r:
            return text(r.call("HGET", PREFIX + "token:rt", "r")) == "1"
    f.wait(has_rt, 15, "token:rt to come back with its refresh token")
    f.wait_joined(nodes, timeout=15)
    check(not [e for e in f.iss.log() if killed_at < e["t"] < seeded_at and
               e["t"] - killed_at < INTERVAL - 2],
          "the issuer was asked while Redis was re-seeded")
    f.wait(lambda: len(f.ok("rt", since=seeded_at)) >= 1 and
           len(f.ok("cc", since=seeded_at)) >= 1, LIFETIME + 5,
           "refreshes after the re-seed")
    f.wait_in_sync(nodes, accounts)
    for a in accounts:
        check_spacing(f, a, what=" (Redis restarted empty)")
    no_reuse(f)
    sampler.verdict()


def fleet_check_config(t):
    """`tokend --check` validates [fleet]: a good one passes; a missing
    key_file, a bad redis URL, a key file of 10 digits, and shared = yes
    without [fleet] are FILE:LINE errors with a non-zero exit; the key file
    is never printed."""
    need_redis()
    f = Fleet(t)
    n = f.node("node1", accounts=("cc",))
    short_key = os.path.join(f.secret_dir, "short.key")
    digits = "0123456789"
    write_file(short_key, digits + "\n", 0o600)
    t.add_secret(digits)
    conf = os.path.basename(n.conf)

    rc, err = n.check_config()
    check(rc == 0, "a good [fleet] fails --check (%d): %s" % (rc, err))

    def bad(what, line_key, **over):
        values = f.fleet_values("node1", **over)
        n.fleet_values = {k: v for k, v in values.items() if v is not None}
        n.write_global()
        rc, err = n.check_config()
        check(rc != 0, "%s: --check exits 0: %s" % (what, err))
        lines = read_text(n.conf).splitlines()
        if line_key:
            want = [i + 1 for i, line in enumerate(lines)
                    if line.startswith(line_key)]
        else:
            want = [i + 1 for i, line in enumerate(lines)
                    if line.strip() == "[fleet]"]
        pat = r"%s:(%s): " % (re.escape(conf), "|".join(map(str, want)))
        check(re.search(pat, err), "%s: no %s:%s error: %r" % (
            what, conf, want, err))
        check(digits not in err and f.key not in err,
              "%s: --check prints the key: %r" % (what, err))
        return err

    err = bad("no key_file", None, key_file=None)
    check("key_file" in err, "the error does not name key_file: %r" % err)
    bad("a bad redis URL", "redis", redis="http://127.0.0.1:6379/")
    bad("a port that is not one", "redis", redis="redis://127.0.0.1:99999/0")
    bad("a sentinel URL without a master", "redis",
        redis="sentinel://127.0.0.1:26379")
    err = bad("a key of 10 digits", "key_file", key_file=short_key)
    check("64" in err or "hex" in err, "the error does not say what a key "
          "is: %r" % err)

    # shared = yes needs [fleet]
    n.fleet_values = None
    n.write_global()
    rc, err = n.check_config()
    check(rc != 0 and "shared = yes needs [fleet]" in err and
          re.search(r"cc\.conf:\d+: ", err),
          "shared = yes without [fleet]: exit %d, %r" % (rc, err))


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("fleet_") and callable(fn)}


if __name__ == "__main__":
    sys.exit(main(TESTS, __file__))
