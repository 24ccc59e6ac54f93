#!/usr/bin/env python3
"""tokend fleet benchmark (make bench BENCH_ONLY=fleet; plain make bench too).

One redis-server (loopback, a password, no persistence, a private folder)
and nginx as the token endpoint over HTTPS on loopback. Two runs of the same
FLEET_SECONDS-long stretch, one after the other, each with a fresh key
prefix (an empty fleet) and FLEET_ACCOUNTS (1,000) shared client_credentials
accounts of FLEET_LIFETIME (40 s) tokens:

  A  one tokend
  B  FLEET_INSTANCES (10) tokend processes, each its own node, config,
     state folder, token folder and socket, the same Redis and key_file

Every account asks https://127.0.0.1:PORT/token?node=NODE&acct=ACCOUNT, and
nginx answers with the token "at.NODE.REQUEST_ID": its access log says which
instance asked for which account, and the token itself says which instance
obtained it (its leader), wherever it is found.

Figures, A and B side by side:
  requests  issuer requests per account per lifetime over the measured
            stretch (from every instance's READY, i.e. all files written,
            to the end), and B/A; the start-up requests apart
  redis     commands processed (INFO stats, sampled every second, ours
            taken out) per refresh over the stretch, and the busiest second
  delay     B: for every refresh and every follower, the follower's token
            file mtime minus the leader's token file mtime for the same
            token (the leader writes its file right after its publish
            returned), and minus the time our own subscriber to the
            fleet's channel received the publish: median, p99, max
  spread    B: accounts led per instance ("leading": true in GET
            /v1/status over each socket), max/mean; also the refreshes
            each instance made over the stretch

Token files are watched with inotify (IN_MOVED_TO: tokend renames a whole
file into place); each new file is read and its mtime kept, so the timing
does not depend on how soon this script reads it.

Usage: fleet.py --tokend build/tokend [--out FILE] [--results RESULTS.md]
"""

import argparse
import bisect
import ctypes
import http.client
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench import free_port, log, med, token_dir  # noqa: E402

ACCOUNTS = int(os.environ.get("FLEET_ACCOUNTS", "1000"))
INSTANCES = int(os.environ.get("FLEET_INSTANCES", "10"))
LIFETIME = int(os.environ.get("FLEET_LIFETIME", "40"))
RATIO = 0.75
JITTER = 0.1
# refreshes per account in the stretch: it ends REFRESHES * RATIO * L
# after READY (plus 2 s), between the REFRESHES-th wave (at most RATIO*L
# apart) and the next (at least (RATIO-JITTER)*L apart)
REFRESHES = int(os.environ.get("FLEET_REFRESHES", "4"))
SECONDS = REFRESHES * RATIO * LIFETIME + 2
IN_FLIGHT = 64
READY_TIMEOUT = 120
OUT_DIRS = []         # token folders (tmpfs), removed at the end


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


# ---- Redis -----------------------------------------------------------

class Resp:
    """A minimal RESP client: commands as arrays, replies parsed."""

    def __init__(self, port, password, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.f = self.sock.makefile("rb")
        if password is not None:
            self.command("AUTH", password)

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def reply(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("redis: " + rest.decode())
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
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError("redis: bad reply %r" % line)

    def command(self, *args):
        self.send(*args)
        return self.reply()

    def info(self, section):
        text = self.command("INFO", section).decode()
        out = {}
        for line in text.split("\r\n"):
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def close(self):
        self.sock.close()


class Redis:
    def __init__(self, work):
        self.dir = os.path.join(work, "redis")
        os.makedirs(self.dir, mode=0o700)
        self.port = free_port()
        self.password = os.urandom(16).hex()
        self.password_file = os.path.join(self.dir, "redis.pass")
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (self.password + "\n").encode())
        os.close(fd)
        conf = os.path.join(self.dir, "redis.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, ("port %d\nbind 127.0.0.1\nprotected-mode yes\n"
                      "save \"\"\nappendonly no\ndaemonize no\n"
                      "dir %s\nlogfile %s/redis.log\nrequirepass %s\n"
                      "maxclients 1000\n"
                      % (self.port, self.dir, self.dir, self.password))
                 .encode())
        os.close(fd)
        self.proc = subprocess.Popen(["redis-server", conf],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                c = Resp(self.port, self.password, 1)
                ok = c.command("PING")
                c.close()
                if ok == "PONG":
                    return
            except (OSError, RuntimeError, ConnectionError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start (see %s)"
                                   % os.path.join(self.dir, "redis.log"))
            time.sleep(0.05)

    def client(self):
        return Resp(self.port, self.password)

    def stop(self):
        stop_proc(self.proc, 10)


class Sampler(threading.Thread):
    """INFO stats every second: (time, total_commands_processed)."""

    def __init__(self, redis):
        super().__init__(daemon=True)
        self.conn = redis.client()
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        t0 = time.monotonic()
        i = 0
        while not self.halt.is_set():
            v = int(self.conn.info("stats")["total_commands_processed"])
            self.samples.append((time.time(), v))
            i += 1
            # the sampling period, not a wait for a condition
            self.halt.wait(max(0.0, t0 + i - time.monotonic()))

    def stop(self):
        self.halt.set()
        if self.ident is not None:
            self.join(5)
        self.conn.close()

    def between(self, t0, t1):
        """(commands, busiest second's commands/s, seconds) from t0 to t1,
        our own INFO calls (one per sample) taken out."""
        s = [x for x in self.samples if t0 <= x[0] <= t1]
        if len(s) < 2:
            return 0, 0.0, 0.0
        total = s[-1][1] - s[0][1] - (len(s) - 1)
        peak = max((b[1] - a[1] - 1) / (b[0] - a[0])
                   for a, b in zip(s, s[1:]))
        return total, peak, s[-1][0] - s[0][0]


def subscriber_main(port, password_file, channel, out):
    """A process of its own (fleet.py --subscribe): every message on the
    fleet's channel as "TIME_NS ACCOUNT", stamped as it arrives."""
    with open(password_file) as f:
        password = f.read().strip()
    c = Resp(port, password, None)
    c.command("SUBSCRIBE", channel)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    while True:
        msg = c.reply()
        t = time.time_ns()
        if isinstance(msg, list) and len(msg) == 3 and msg[0] == b"message":
            account = msg[2].split(b" ", 1)[0]
            os.write(fd, b"%d %s\n" % (t, account))


# ---- nginx -----------------------------------------------------------

class Nginx:
    """nginx answering every POST /token with the unique token
    at.NODE.REQUEST_ID, logging when, who and for which account."""

    def __init__(self, work, certs, lifetime):
        self.dir = os.path.join(work, "nginx")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.port = free_port()
        self.access_log = os.path.join(self.dir, "access.log")
        conf = """
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format t '$msec $arg_node $arg_acct $request_id';
    access_log {log} t;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {d}/body;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certs}/server.pem;
        ssl_certificate_key {certs}/server.key;
        location = /token {{
            default_type application/json;
            return 200 '{{"access_token":"at.${{arg_node}}.$request_id","token_type":"Bearer","expires_in":{lifetime}}}';
        }}
    }}
}}
""".format(d=self.dir, log=self.access_log, port=self.port, certs=certs,
           lifetime=lifetime)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(
            ["nginx", "-p", self.dir, "-c", self.conf, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if (self.proc.poll() is not None or
                        time.monotonic() > deadline):
                    raise RuntimeError("nginx did not start")
                time.sleep(0.05)

    def url(self, node, account):
        return "https://127.0.0.1:%d/token?node=%s&acct=%s" % (
            self.port, node, account)

    def requests(self):
        """(time, node, account, request_id) of every request so far (the
        log is not buffered)."""
        out = []
        with open(self.access_log) as f:
            for line in f:
                p = line.split()
                if len(p) == 4:
                    out.append((float(p[0]), p[1], p[2], p[3]))
        return out

    def stop(self):
        stop_proc(self.proc, 10)


def stop_proc(proc, timeout):
    if proc.poll() is not None:
        return proc.returncode
    proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# ---- tokend ----------------------------------------------------------

class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def get_json(sock_path, path):
    c = UnixHTTP(sock_path)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError("GET %s: %d %s" % (path, r.status, body[:200]))
        return json.loads(body)
    finally:
        c.close()


class Instance:
    def __init__(self, tokend, work, node, prefix, redis, key_file, nginx,
                 certs):
        self.node = node
        self.dir = os.path.join(work, node)
        os.makedirs(self.dir)
        self.out = token_dir(self.dir)
        OUT_DIRS.append(self.out)
        self.sock = os.path.join(self.dir, "tokend.sock")
        acc = os.path.join(self.dir, "accounts")
        os.makedirs(acc)
        os.makedirs(os.path.join(self.dir, "state"))
        for i in range(ACCOUNTS):
            name = account_name(i)
            fd = os.open(os.path.join(acc, name + ".conf"),
                         os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, (
                "[account]\ntoken_url = %s\nclient_id = c\n"
                "client_secret = s\nclient_auth = post\nca_file = %s/ca.pem\n"
                "shared = yes\n[refresh]\nmargin = 0\nratio = %s\n"
                "jitter = %s\n[file]\npath = %s/%s.token\n"
                % (nginx.url(node, name), certs, RATIO, JITTER, self.out,
                   name)).encode())
            os.close(fd)
        self.conf = os.path.join(self.dir, "tokend.conf")
        with open(self.conf, "w") as f:
            f.write("[tokend]\naccounts_dir = %s\nstate_dir = %s/state\n"
                    "socket = %s\nlog_level = info\nmax_requests = %d\n"
                    "max_requests_per_host = %d\n"
                    "[fleet]\nredis = redis://127.0.0.1:%d/0\n"
                    "password_file = %s\nkey_file = %s\nnode = %s\n"
                    "key_prefix = %s\n"
                    % (acc, self.dir, self.sock, IN_FLIGHT, IN_FLIGHT,
                       redis.port, redis.password_file, key_file, node,
                       prefix))
        self.tokend = tokend
        self.proc = None
        self.log_path = os.path.join(self.dir, "tokend.log")

    def start(self):
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID",
                  "WATCHDOG_USEC", "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY"):
            env.pop(k, None)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([self.tokend, "-c", self.conf], env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, n=2000):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def log_count(self, word):
        try:
            with open(self.log_path, errors="replace") as f:
                return sum(1 for line in f if word in line)
        except OSError:
            return 0


def account_name(i):
    return "a%04d" % i


def stop_instances(instances):
    """SIGTERM to all at once (each hands its leases back), then wait."""
    running = [t for t in instances if t.proc and t.proc.poll() is None]
    for t in running:
        t.proc.terminate()
    deadline = time.monotonic() + 30
    rcs = {}
    for t in instances:
        if t.proc is None:
            continue
        try:
            rcs[t.node] = t.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            t.proc.kill()
            rcs[t.node] = t.proc.wait()
        t.log.close()
    return rcs


# ---- token files -----------------------------------------------------

IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000


class Watcher:
    """inotify on every instance's token folder: each new file read once,
    its token and mtime kept per (instance, account)."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.dirs = {}          # wd -> (instance index, folder)
        self.seen = {}          # (index, account) -> [(token, mtime_ns)]
        self.files = {}         # index -> accounts with a file
        self.overflows = 0

    def watch(self, index, folder):
        wd = self.libc.inotify_add_watch(self.fd, folder.encode(),
                                         IN_MOVED_TO)
        if wd < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch " + folder)
        self.dirs[wd] = (index, folder)
        self.files[index] = set()

    def poll(self, timeout):
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not r:
            return
        while True:
            try:
                buf = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            stamp = time.time_ns()
            off = 0
            while off < len(buf):
                wd, mask, _, n = struct.unpack_from("iIII", buf, off)
                name = buf[off + 16:off + 16 + n].rstrip(b"\0").decode()
                off += 16 + n
                if mask & IN_Q_OVERFLOW:
                    self.overflows += 1
                    continue
                if wd in self.dirs and name.endswith(".token"):
                    self.read(wd, name, stamp)

    def read(self, wd, name, stamp):
        index, folder = self.dirs[wd]
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            mtime = os.fstat(fd).st_mtime_ns
            token = os.read(fd, 4096).decode().strip()
        finally:
            os.close(fd)
        account = name[:-len(".token")]
        hist = self.seen.setdefault((index, account), [])
        if not hist or hist[-1][0] != token:
            hist.append((token, mtime, stamp))
        self.files[index].add(account)

    def ready(self, indexes):
        return all(len(self.files[i]) >= ACCOUNTS for i in indexes)

    def close(self):
        os.close(self.fd)


# ---- one run ---------------------------------------------------------

def run(args, work, label, count, redis, key_file, nginx, certs, pubs_path):
    """count instances, key prefix of their own: the figures of one run."""
    prefix = "bench%s:" % label
    nodes = ["%s%d" % (label.lower(), i) for i in range(count)]
    log("run %s: %d instance(s) x %d shared accounts, %d s tokens"
        % (label, count, ACCOUNTS, LIFETIME))
    instances = [Instance(args.tokend, work, n, prefix, redis, key_file,
                          nginx, certs) for n in nodes]
    watcher = Watcher()
    for i, t in enumerate(instances):
        watcher.watch(i, t.out)
    sub = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--subscribe",
         str(redis.port), redis.password_file, prefix + "tokens", pubs_path],
        stdin=subprocess.DEVNULL)
    sampler = Sampler(redis)
    res = {"label": label, "instances": count}
    try:
        # the subscriber is in once redis counts it
        c = redis.client()
        deadline = time.monotonic() + 10
        while int(c.command("PUBSUB", "NUMSUB", prefix + "tokens")[1]) < 1:
            if time.monotonic() > deadline or sub.poll() is not None:
                raise RuntimeError("the subscriber did not subscribe")
            time.sleep(0.02)
        c.close()
        sampler.start()
        t_start = time.time()
        for t in instances:
            t.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not watcher.ready(range(count)):
            for t in instances:
                if t.proc.poll() is not None:
                    raise RuntimeError("%s exited %d:\n%s" % (
                        t.node, t.proc.returncode, t.log_tail()))
            if time.monotonic() > deadline:
                have = [len(watcher.files[i]) for i in range(count)]
                raise RuntimeError("token files after %d s: %s of %d each"
                                   % (READY_TIMEOUT, have, ACCOUNTS))
            watcher.poll(0.2)
        t_ready = time.time()
        log("run %s: every instance has every token file after %.1f s; "
            "measuring %.0f s" % (label, t_ready - t_start, SECONDS))
        cpu0 = sum(t.cpu_seconds() for t in instances)
        t_end = t_ready + SECONDS
        while time.time() < t_end:        # the measured stretch itself
            watcher.poll(min(0.5, t_end - time.time()))
            for t in instances:
                if t.proc.poll() is not None:
                    raise RuntimeError("%s exited %d:\n%s" % (
                        t.node, t.proc.returncode, t.log_tail()))
        cpu1 = sum(t.cpu_seconds() for t in instances)
        statuses = [get_json(t.sock, "/v1/status") for t in instances]
        fleets = [get_json(t.sock, "/v1/fleet") for t in instances]
        watcher.poll(0.5)                 # stragglers of the last wave
        t_measured = time.time()
        stalled = diagnose(nginx, nodes, t_ready, t_end, instances,
                           statuses, redis, prefix)
    finally:
        sampler.stop()
        rcs = stop_instances(instances)
        stop_proc(sub, 5)
        watcher.close()
    res["stalled"] = stalled
    for t in instances:
        if rcs.get(t.node) != 0:
            raise RuntimeError("%s exited %s:\n%s" % (t.node, rcs.get(t.node),
                                                      t.log_tail()))

    # -- requests
    mine = set(nodes)
    reqs = [r for r in nginx.requests() if r[1] in mine]
    startup = [r for r in reqs if r[0] < t_ready]
    window = [r for r in reqs if t_ready <= r[0] < t_end]
    late = [r for r in reqs if r[0] >= t_end]
    per_acct = {}
    for r in window:
        per_acct[r[2]] = per_acct.get(r[2], 0) + 1
    counts = [per_acct.get(account_name(i), 0) for i in range(ACCOUNTS)]
    lifetimes = (t_end - t_ready) / LIFETIME
    res.update({
        "startup_s": t_ready - t_start,
        "seconds": t_end - t_ready,
        "startup_requests": len(startup),
        "window_requests": len(window),
        "late_requests": len(late),
        "per_account_min": min(counts), "per_account_max": max(counts),
        "accounts_off": sum(1 for c in counts if c != REFRESHES),
        "per_lifetime": len(window) / ACCOUNTS / lifetimes,
        "cpu_s": cpu1 - cpu0,
        "first_request_gap": (t_ready - reqs[0][0]) if reqs else 0,
    })
    by_node = {}
    for r in window:
        by_node[r[1]] = by_node.get(r[1], 0) + 1
    res["refreshes_by_node"] = [by_node.get(n, 0) for n in nodes]

    # -- redis
    cmds, peak, span = sampler.between(t_ready, t_end)
    res["redis_commands"] = cmds
    res["redis_per_refresh"] = cmds / max(1, len(window))
    res["redis_peak_per_s"] = peak
    res["redis_mean_per_s"] = cmds / span if span else 0.0
    s_all = sampler.samples
    res["redis_peak_startup_per_s"] = max(
        [(b[1] - a[1] - 1) / (b[0] - a[0]) for a, b in zip(s_all, s_all[1:])
         if a[0] >= t_start - 1 and b[0] <= t_ready + 1] or [0.0])

    # -- leadership
    leading = []
    for st in statuses:
        leading.append(sum(1 for acct in st if acct.get("leading")))
    res["leading"] = leading
    res["leading_sum"] = sum(leading)
    res["leading_max_over_mean"] = (max(leading) / (sum(leading) / count)
                                    if sum(leading) else float("nan"))
    res["fleet"] = {k: sum(f.get(k, 0) for f in fleets)
                    for k in ("lease_losses", "publish_failures",
                              "published", "received", "reconnects")}
    res["members"] = [f.get("members") for f in fleets]
    res["log_warnings"] = sum(t.log_count("WARNING") + t.log_count("ERROR")
                              for t in instances)
    res["overflows"] = watcher.overflows

    # -- delays: tokens obtained in the stretch, by their leader (the node
    # in the token), against every follower's file and our subscriber
    pubs = {}
    if os.path.exists(pubs_path):
        with open(pubs_path) as f:
            for line in f:
                p = line.split()
                if len(p) == 2:
                    pubs.setdefault(p[1], []).append(int(p[0]))
    for v in pubs.values():
        v.sort()
    # from 1 s after READY: a leader writes its files right after sending
    # its publish, before Redis ran it, so the last start-up publishes
    # may come after READY; no refresh comes that soon
    res["publishes_seen"] = sum(
        1 for v in pubs.values() for t in v
        if (t_ready + 1) * 1e9 <= t < t_end * 1e9)
    index = {n: i for i, n in enumerate(nodes)}
    tokens = {}      # (account, token) -> {index: (mtime, seen)}
    for (i, account), hist in watcher.seen.items():
        for token, mtime, stamp in hist:
            tokens.setdefault((account, token), {})[i] = (mtime, stamp)
    d_leader, d_pub, d_leader_pub, d_mtime = [], [], [], []
    missing = no_leader_file = obtained = 0
    for (account, token), where in tokens.items():
        parts = token.split(".")
        if len(parts) != 3 or parts[1] not in index:
            continue
        lead = index[parts[1]]
        first = min(x[1] for x in where.values())
        if not t_ready * 1e9 <= first < t_end * 1e9:
            continue
        obtained += 1
        ml = where.get(lead)
        if ml is None:
            no_leader_file += 1
        missing += sum(1 for i in range(count)
                       if i != lead and i not in where)
        tp = None
        v = pubs.get(account, [])
        ref = ml[1] if ml is not None else first
        k = bisect.bisect_left(v, ref)
        near = [v[j] for j in (k - 1, k) if 0 <= j < len(v)]
        near = [x for x in near if abs(x - ref) < 2e9]
        if near:
            tp = min(near, key=lambda x: abs(x - ref))
        if ml is not None and tp is not None:
            d_leader_pub.append((ml[1] - tp) / 1e6)
        for i, (mtime, seen) in where.items():
            if i == lead:
                continue
            if ml is not None:
                d_leader.append((seen - ml[1]) / 1e6)
                d_mtime.append((mtime - ml[0]) / 1e6)
            if tp is not None:
                d_pub.append((seen - tp) / 1e6)
    res["tokens_obtained"] = obtained
    res["follower_files_missing"] = missing
    res["tokens_without_leader_file"] = no_leader_file
    res["delays_leader_ms"] = d_leader
    res["delays_pub_ms"] = d_pub
    res["delays_leader_pub_ms"] = d_leader_pub
    res["delays_mtime_ms"] = d_mtime
    res["t_measured"] = t_measured
    res["t"] = (t_start, t_ready, t_end)
    if os.environ.get("FLEET_KEEP"):
        with open(os.path.join(work, "res-%s.json" % label), "w") as f:
            json.dump(res, f)
    log("run %s: %d requests at start-up, %d in %.0f s (%.3f per account "
        "per lifetime), %d after" % (label, len(startup), len(window),
                                     t_end - t_ready, res["per_lifetime"],
                                     len(late)))
    return res


def diagnose(nginx, nodes, t_ready, t_end, instances, statuses, redis,
             prefix):
    """Accounts with fewer than REFRESHES requests in the stretch, while
    everything still runs: their status in every instance, their lease and
    record in Redis, their lines in every log."""
    mine = set(nodes)
    per = {}
    for r in nginx.requests():
        if r[1] in mine and t_ready <= r[0] < t_end:
            per[r[2]] = per.get(r[2], 0) + 1
    short = [account_name(i) for i in range(ACCOUNTS)
             if per.get(account_name(i), 0) < REFRESHES]
    out = []
    c = redis.client()
    try:
        for name in short[:5]:
            lines = ["%s: %d requests in the stretch" % (
                name, per.get(name, 0))]
            lines.append("  redis: lease %r pttl %s, fence %r, record "
                         "f/o/r %r" % (
                             c.command("GET", prefix + "lease:" + name),
                             c.command("PTTL", prefix + "lease:" + name),
                             c.command("GET", prefix + "fence:" + name),
                             c.command("HMGET", prefix + "token:" + name,
                                       "f", "o", "r")))
            for t, st in zip(instances, statuses):
                for acct in st:
                    if acct.get("account") == name:
                        lines.append("  %s status: %s" % (
                            t.node, json.dumps(acct, sort_keys=True)))
                with open(t.log_path, errors="replace") as f:
                    for line in f:
                        if ("account %s:" % name) in line:
                            lines.append("  %s log: %s" % (
                                t.node, line.rstrip()))
            out.append("\n".join(lines))
    finally:
        c.close()
    if short:
        log("%d account(s) short of %d requests in the stretch: %s"
            % (len(short), REFRESHES, " ".join(short[:20])))
        for text in out:
            log(text)
    return {"count": len(short), "names": short, "detail": out}


def summarize(a, b):
    """The table rows: (figure, A, B, target)."""
    ratio = b["per_lifetime"] / a["per_lifetime"]
    rows = [
        ("instances", "1", "%d" % b["instances"], "-"),
        ("start: exec to every instance's %d token files" % ACCOUNTS,
         "%.1f s" % a["startup_s"], "%.1f s" % b["startup_s"], "-"),
        ("issuer requests at start-up",
         "%d" % a["startup_requests"], "%d" % b["startup_requests"],
         "%d" % ACCOUNTS),
        ("measured stretch after start", "%.0f s" % a["seconds"],
         "%.0f s" % b["seconds"], "-"),
        ("issuer requests in the stretch",
         "%d" % a["window_requests"], "%d" % b["window_requests"],
         "%d (%d refreshes each)" % (REFRESHES * ACCOUNTS, REFRESHES)),
        ("requests per account: min / max; accounts not at %d" % REFRESHES,
         "%d / %d; %d" % (a["per_account_min"], a["per_account_max"],
                          a["accounts_off"]),
         "%d / %d; %d" % (b["per_account_min"], b["per_account_max"],
                          b["accounts_off"]), "-"),
        ("issuer requests per account per lifetime (%d s)" % LIFETIME,
         "%.3f" % a["per_lifetime"], "%.3f" % b["per_lifetime"], "-"),
        ("B / A, requests per account per lifetime", "",
         "%.3f" % ratio, "<= 1.02"),
        ("Redis commands per refresh (stretch)",
         "%.1f" % a["redis_per_refresh"], "%.1f" % b["redis_per_refresh"],
         "-"),
        ("Redis commands/s: mean / busiest second (stretch)",
         "%.0f / %.0f" % (a["redis_mean_per_s"], a["redis_peak_per_s"]),
         "%.0f / %.0f" % (b["redis_mean_per_s"], b["redis_peak_per_s"]),
         "-"),
        ("Redis commands/s, busiest second of the start",
         "%.0f" % a["redis_peak_startup_per_s"],
         "%.0f" % b["redis_peak_startup_per_s"], "-"),
        ("publishes our subscriber saw in the stretch",
         "%d" % a["publishes_seen"], "%d" % b["publishes_seen"],
         "= requests"),
        ("accounts short of %d requests in the stretch" % REFRESHES,
         "%d" % a["stalled"]["count"], "%d" % b["stalled"]["count"], "0"),
        ("publish seen by a subscriber -> follower's file in place: "
         "median / p99 / max", "-", fmt_delays(b["delays_pub_ms"]), "-"),
        ("follower's file in place - leader's file in place, same token: "
         "median / p99 / max", "-", fmt_delays(b["delays_leader_ms"]), "-"),
        ("follower file mtime - leader file mtime (clock ticks of 4 ms): "
         "median / p99", "-", fmt_delays(b["delays_mtime_ms"], 2), "-"),
        ("publish seen by a subscriber -> leader's file in place: "
         "median / p99", fmt_delays(a["delays_leader_pub_ms"], 2),
         fmt_delays(b["delays_leader_pub_ms"], 2), "-"),
        ("follower files that never held a token (of %d)"
         % (b["tokens_obtained"] * (b["instances"] - 1)),
         "-", "%d" % b["follower_files_missing"], "0"),
        ("accounts led per instance (GET /v1/status), min..max",
         "%d" % a["leading_sum"],
         "%d..%d (sum %d)" % (min(b["leading"]), max(b["leading"]),
                               b["leading_sum"]), "-"),
        ("accounts led: max / mean", "-",
         "%.2f" % b["leading_max_over_mean"], "<= ~2"),
        ("refreshes made per instance in the stretch, min..max", "-",
         "%d..%d" % (min(b["refreshes_by_node"]),
                     max(b["refreshes_by_node"])), "-"),
        ("lease losses / publish failures (all instances)",
         "%d / %d" % (a["fleet"]["lease_losses"],
                      a["fleet"]["publish_failures"]),
         "%d / %d" % (b["fleet"]["lease_losses"],
                      b["fleet"]["publish_failures"]), "0 / 0"),
        ("tokend CPU over the stretch, all instances",
         "%.1f s" % a["cpu_s"], "%.1f s" % b["cpu_s"], "-"),
    ]
    return rows, ratio


def fmt_delays(d, n=3):
    if not d:
        return "-"
    vals = [med(d), pct(d, 99), max(d)][:n]
    return " / ".join("%.2f" % v for v in vals) + " ms"


def table(rows):
    lines = ["| figure | A: 1 instance | B: %d instances | target |"
             % INSTANCES, "|---|---|---|---|"]
    lines += ["| %s | %s | %s | %s |" % r for r in rows]
    return "\n".join(lines)


def section(rows, a, b, date):
    text = section_text(rows, a, b, date)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def section_text(rows, a, b, date):
    return """## Fleet mode

`make bench BENCH_ONLY=fleet` (`bench/fleet.py`; a plain `make bench` runs
it too, last). Measured on {date}, one run, on the same 2-core machine
(shared with other work). redis-server {redis} on loopback (a password,
no persistence), nginx {nginx} as the token endpoint over HTTPS on
loopback, tokend built with `make` (`-O2`).

Two runs one after the other, each {acc:,} shared client_credentials
accounts (`shared = yes`) of {life} s tokens (`expires_in`), `[refresh]
margin = 0, ratio = {ratio}, jitter = {jitter}` (a refresh every {lo:.0f}-{hi:.0f} s),
the default lease (15 s), a fresh key prefix each (an empty fleet):
**A** one tokend, **B** {n} tokend processes, each with its own `node`,
config, state folder, token folder (tmpfs) and socket, the same Redis and
`key_file`. After every instance has every token file, each run is
measured for {secs:.0f} s: {k} refresh waves, ending before the next.

Every account asks `/token?node=NODE&acct=ACCOUNT`, and nginx answers
`at.NODE.$request_id`: its log says who asked for what, and the token says
which instance obtained it (its leader) wherever it is found. Token files
are watched with inotify and stamped as each rename into place is
reported (file mtimes move in 4 ms clock ticks here: too coarse). The
leader writes its file once Redis has answered its publish (the Lua
script's HSET + PUBLISH), so the leader and its followers write at about
the same time; "follower - leader file" compares the two, and "publish
seen -> follower's file" is against the time a separate
process subscribed to the fleet's channel received the message (as a
follower would). Redis commands are INFO's `total_commands_processed`,
sampled every second, the samples' own INFO taken out; they include every
instance's lease renewals and heartbeats.

{table}

- Requests: B made {b_req} requests for the {k} x {acc:,} refreshes
  where A made {a_req}, a ratio of **{ratio_ba:.3f}** per account per
  lifetime (target <= 1.02).{below}
- Followers: {n_d:,} follower files (every follower, every refresh) held
  the new token a median {p_med:.2f} ms after the publish reached a
  subscriber (p99 {p_p99:.2f} ms), {d_med:.2f} ms after the leader's own
  file (p99 {d_p99:.2f} ms).
- Leadership: the most loaded instance led {lmax} accounts against a mean
  of {lmean:.0f} ({lratio:.2f} times its share; target about 2 or less).

{stalls}
Reproduce: `make bench BENCH_ONLY=fleet` (FLEET_ACCOUNTS, FLEET_INSTANCES,
FLEET_LIFETIME, FLEET_REFRESHES change the sizes; the defaults take
about 5 minutes).
""".format(date=date, redis=tool_version(["redis-server", "--version"], "v="),
           nginx=tool_version(["nginx", "-v"], "nginx/"), acc=ACCOUNTS,
           life=LIFETIME, ratio=RATIO, jitter=JITTER, n=INSTANCES,
           lo=(RATIO - JITTER) * LIFETIME, hi=RATIO * LIFETIME,
           secs=SECONDS, k=REFRESHES, table=table(rows),
           b_req=b["window_requests"], a_req=a["window_requests"],
           ratio_ba=b["per_lifetime"] / a["per_lifetime"],
           n_d=len(b["delays_leader_ms"]),
           d_med=med(b["delays_leader_ms"]) if b["delays_leader_ms"] else 0,
           d_p99=pct(b["delays_leader_ms"], 99),
           p_med=med(b["delays_pub_ms"]) if b["delays_pub_ms"] else 0,
           p_p99=pct(b["delays_pub_ms"], 99),
           lmax=max(b["leading"]), lmean=b["leading_sum"] / INSTANCES,
           lratio=b["leading_max_over_mean"], stalls=stalls_text(a, b),
           below="" if not b["stalled"]["count"] else
           " That is no saving: B is short only because %d accounts missed "
           "refreshes, their tokens expiring on every instance (below)."
           % b["stalled"]["count"])


def stalls_text(a, b):
    out = []
    for r in (a, b):
        st = r["stalled"]
        if st["count"]:
            out.append("- **Run %s: %d accounts got fewer than %d refreshes "
                       "in the stretch** (%s%s). The first of them, as the "
                       "bench saw it before stopping:\n\n```\n%s\n```\n"
                       % (r["label"], st["count"], REFRESHES,
                          " ".join(st["names"][:10]),
                          " ..." if st["count"] > 10 else "",
                          short_detail(st["detail"][0])))
    return "\n".join(out)


def short_detail(text):
    """A stalled account's detail: Redis, then each instance's status
    fields that tell, and its log lines."""
    lines = text.split("\n")
    busy = set(line.split()[0] for line in lines
               if " log: " in line and ("leading" in line or
                                        "new token" in line))
    keep = []
    for line in lines:
        if line.startswith("  ") and " log: " in line or " status: " in line:
            if line.split()[0] not in busy:
                continue
        if " status: " in line:
            node, js = line.split(" status: ", 1)
            d = json.loads(js)
            line = "%s status: state %s, leading %s, leader %s, " \
                "next_refresh_at %s, expires_at %s" % (
                    node, d.get("state"), d.get("leading"), d.get("leader"),
                    d.get("next_refresh_at"), d.get("expires_at"))
        keep.append(line.replace("tokend: ", ""))
    keep.append("  (the other instances: following, their tokens expired "
                "alike)")
    return "\n".join(keep)


def tool_version(argv, marker):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    text = p.stdout + p.stderr
    i = text.find(marker)
    return text[i + len(marker):].split()[0] if i >= 0 else "?"


def replace_section(path, text):
    """Replace the "## Fleet mode" section of path (to the next "## " or
    the end) with text, or append it."""
    with open(path) as f:
        lines = f.read().split("\n")
    start = next((i for i, line in enumerate(lines)
                  if line.strip() == "## Fleet mode"), None)
    new = text.rstrip("\n").split("\n")
    if start is None:
        while lines and lines[-1] == "":
            lines.pop()
        lines += [""] + new
    else:
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new + ([""] if end < len(lines) else [])
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")


def bench(args):
    """Both runs; returns (markdown table, section text)."""
    work = tempfile.mkdtemp(prefix="tokend-fleet-")
    started = []
    try:
        certs = os.path.join(work, "certs")
        subprocess.run(["sh", os.path.join(ROOT, "tests/mkcerts.sh"), certs],
                       check=True, stdout=subprocess.DEVNULL)
        key_file = os.path.join(work, "fleet.key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (os.urandom(32).hex() + "\n").encode())
        os.close(fd)
        redis = Redis(work)
        started.append(redis)
        nginx = Nginx(work, certs, LIFETIME)
        started.append(nginx)
        a = run(args, work, "A", 1, redis, key_file, nginx, certs,
                os.path.join(work, "pubs-a"))
        b = run(args, work, "B", INSTANCES, redis, key_file, nginx, certs,
                os.path.join(work, "pubs-b"))
    finally:
        for p in reversed(started):
            p.stop()
        if os.environ.get("FLEET_KEEP"):
            log("kept " + work + " and " + " ".join(OUT_DIRS))
        else:
            shutil.rmtree(work, ignore_errors=True)
            for d in OUT_DIRS:
                shutil.rmtree(d, ignore_errors=True)
    rows, ratio = summarize(a, b)
    detail = ("leading per instance: %s; refreshes per instance: %s; "
              "members seen: %s; fleet counters A %s, B %s; "
              "requests after the stretch A %d, B %d; warnings/errors in "
              "logs A %d, B %d; inotify overflows %d/%d; tokens obtained "
              "in the stretch A %d, B %d, without a leader file B %d"
              % (b["leading"], b["refreshes_by_node"], b["members"],
                 a["fleet"], b["fleet"], a["late_requests"],
                 b["late_requests"], a["log_warnings"], b["log_warnings"],
                 a["overflows"], b["overflows"], a["tokens_obtained"],
                 b["tokens_obtained"], b["tokens_without_leader_file"]))
    log(detail)
    date = time.strftime("%Y-%m-%d")
    return table(rows), section(rows, a, b, date), detail


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "--subscribe":
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        subscriber_main(int(sys.argv[2]), sys.argv[3], sys.argv[4],
                        sys.argv[5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokend", default=os.path.join(ROOT, "build/tokend"))
    ap.add_argument("--out", default="")
    ap.add_argument("--results", default="",
                    help="replace the Fleet mode section of this file")
    args = ap.parse_args()
    tab, text, _ = bench(args)
    print(tab)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.results:
        replace_section(args.results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
