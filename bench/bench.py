#!/usr/bin/env python3
"""tokend benchmarks (make bench): 10,000 accounts against nginx on loopback.

Each figure is the median of BENCH_RUNS runs (default 3), measured side by
side with what it is compared to in the same run:

  ceiling   nginx's own rate for the token request (h2load over HTTP/1.1,
            64 kept-alive connections: what tokend is allowed in flight)
  storm     10,000 accounts start at once: time from exec to READY=1
            (every first token obtained and written), and its ratio to the
            ceiling's time for 10,000 requests. Token files go to tmpfs
            (/dev/shm), as /run/tokend is; state files to disk.
  memory    peak RSS (VmHWM) at 10,000 accounts minus peak RSS with one,
            per account, less the token's bytes
  idle      context switches per second over a quiet stretch (IDLE_SECONDS,
            default 60) with every token valid for an hour
  wave      10,000 tokens of 60 s obtained together: the refresh wave as
            nginx saw it (peak requests in flight, busiest 100 ms) and
            tokend's CPU per refresh (utime + stime over the wave / count)
  reads     token reads/s over the socket (keep-alive; a connection per
            read) against open/read/close of the token file
  tokenctl  one `tokenctl token NAME` against one `cat` of the token file,
            each a new process with its stdout in a pipe (as in
            TOKEN=$(tokenctl token NAME)), CTL_ITERATIONS (default 2000)
            of each alternated: the medians and their ratio. A static
            token, so no issuer is needed (`--only tokenctl` runs just this)
  assertion the CPU of one signed client assertion (bench/assertion.c:
            oauth_assertion with a private_key_jwt key, RS256 and PS256 on
            RSA 2048, ES256, EdDSA, and HS256 for client_secret_jwt), all
            interleaved in one process, ASSERTION_ROUNDS rounds (default 9)
            of about ASSERTION_MS ms (default 200) each: medians, ratios to
            ES256 within each round, and the share of a refresh's CPU (the
            wave's in a full run; REFRESH_CPU_US with `--only assertion`,
            which runs just this, in seconds)
  fleet     fleet mode: one tokend against 10 sharing 1,000 accounts
            through one redis-server, side by side (bench/fleet.py; some
            5 minutes, last; `--only fleet` runs just this)

Usage: bench.py --tokend build/tokend --sockread build/sockread
                --tokenctl build/tokenctl --assertion build/assertion
                [--only tokenctl|assertion|fleet]
                [--out FILE] [--results RESULTS.md]
Loopback only; everything it starts it stops; a run takes some minutes.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ACCOUNTS = int(os.environ.get("BENCH_ACCOUNTS", "10000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
IDLE_SECONDS = int(os.environ.get("IDLE_SECONDS", "60"))
CTL_ITERATIONS = int(os.environ.get("CTL_ITERATIONS", "2000"))
CTL_SECONDS_MAX = 300   # the tokenctl figure stops early rather than run on
ASSERTION_ROUNDS = int(os.environ.get("ASSERTION_ROUNDS", "9"))
ASSERTION_MS = int(os.environ.get("ASSERTION_MS", "200"))
# CPU per refresh in bench/RESULTS.md (2026-11-23, the refresh wave): what
# `--only assertion` compares with, having no wave of its own
REFRESH_CPU_US = 276
ASSERTION_KEYS = {"RS256": "RSA 2048", "PS256": "RSA 2048",
                  "ES256": "EC P-256", "EdDSA": "Ed25519",
                  "HS256": "client secret"}
IN_FLIGHT = 64          # max_requests and max_requests_per_host here
TOKEN_BYTES = 32        # nginx's $request_id


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nginx:
    """nginx answering every POST /token with a unique token."""

    def __init__(self, work, certs, lifetime):
        self.dir = os.path.join(work, "nginx-%d" % lifetime)
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.port = free_port()
        self.access_log = os.path.join(self.dir, "access.log")
        conf = """
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format t '$msec $request_time';
    access_log {log} t buffer=1m flush=1s;
    keepalive_requests 1000000;     # also HTTP/2 requests per connection
    keepalive_timeout 120s;
    http2_max_concurrent_streams 256;
    client_body_temp_path {d}/body;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {certs}/server.pem;
        ssl_certificate_key {certs}/server.key;
        location = /token {{
            default_type application/json;
            return 200 '{{"access_token":"$request_id","token_type":"Bearer","expires_in":{lifetime}}}';
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
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    @property
    def url(self):
        return "https://127.0.0.1:%d/token" % self.port

    def requests(self):
        """(start, end) of every request nginx logged so far."""
        self.proc.send_signal(signal.SIGUSR1)      # reopen: flushes buffers
        time.sleep(0.3)
        out = []
        with open(self.access_log) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    end, took = float(parts[0]), float(parts[1])
                    out.append((end - took, end))
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def ceiling(nginx, work):
    """Requests/s nginx serves for the token request as tokend sends it:
    h2load over HTTP/1.1 with IN_FLIGHT kept-alive connections (tokend's
    max_requests_per_host here), the same body."""
    body = os.path.join(work, "body")
    with open(body, "w") as f:
        f.write("grant_type=client_credentials&client_id=c&client_secret=s")
    out = subprocess.run(
        ["h2load", "--h1", "-n", str(ACCOUNTS * 2), "-c", str(IN_FLIGHT),
         "-m", "1",
         "-d", body, "-H", "Content-Type: application/x-www-form-urlencoded",
         nginx.url], capture_output=True, text=True, timeout=300).stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    ok = re.search(r"(\d+) succeeded, (\d+) failed", out)
    if not m or not ok or ok.group(2) != "0":
        raise RuntimeError("h2load failed:\n" + out)
    return float(m.group(1))


def write_accounts(d, nginx, certs, count, lifetime, out_dir):
    acc = os.path.join(d, "accounts")
    os.makedirs(acc)
    os.makedirs(out_dir, exist_ok=True)
    margin = "0" if lifetime < 600 else "5m"
    for i in range(count):
        name = "a%05d" % i
        path = os.path.join(acc, name + ".conf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (
            "[account]\ntoken_url = %s\nclient_id = c\nclient_secret = s\n"
            "client_auth = post\nca_file = %s/ca.pem\n[refresh]\n"
            "margin = %s\n[file]\npath = %s/%s.token\n"
            % (nginx.url, certs, margin, out_dir, name)).encode())
        os.close(fd)
    return acc


class Tokend:
    def __init__(self, tokend, d, accounts_dir):
        self.dir = d
        self.sock = os.path.join(d, "tokend.sock")
        self.notify_path = os.path.join(d, "notify")
        self.conf = os.path.join(d, "tokend.conf")
        with open(self.conf, "w") as f:
            f.write("[tokend]\naccounts_dir = %s\nstate_dir = %s/state\n"
                    "socket = %s\nlog_level = warning\nmax_requests = %d\n"
                    "max_requests_per_host = %d\n"
                    % (accounts_dir, d, self.sock, IN_FLIGHT, IN_FLIGHT))
        os.makedirs(os.path.join(d, "state"), exist_ok=True)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path)
        for k in ("LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC",
                  "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY"):
            env.pop(k, None)
        self.log = open(os.path.join(d, "tokend.log"), "w")
        self.ready_at = None
        self.ready = threading.Event()
        # read every notification, as systemd does: a full socket would
        # block tokend in sd_notify()
        self.notify.settimeout(0.5)
        self.listening = True
        self.listener = threading.Thread(target=self._listen, daemon=True)
        self.listener.start()
        self.started = time.monotonic()
        self.proc = subprocess.Popen([tokend, "-c", self.conf], env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)

    def _listen(self):
        while self.listening:
            try:
                msg = self.notify.recv(4096).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            if "READY=1" in msg.split("\n") and self.ready_at is None:
                self.ready_at = time.monotonic()
                self.ready.set()

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.wait(0.2):
                return self.ready_at - self.started
            if self.proc.poll() is not None:
                raise RuntimeError("tokend exited %d" % self.proc.returncode)
        raise RuntimeError("no READY=1 in %ds" % timeout)

    def status(self, field):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def ctx_switches(self):
        return (self.status("voluntary_ctxt_switches") +
                self.status("nonvoluntary_ctxt_switches"))

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick   # utime + stime

    def stop(self):
        self.proc.terminate()
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = -9
        self.listening = False
        self.listener.join()
        self.notify.close()
        self.log.close()
        if rc != 0:
            raise RuntimeError("tokend exited %d" % rc)


def token_dir(d):
    """Token files go to tmpfs, as /run/tokend is on a real system (here
    /run is on disk); state files stay on disk in d."""
    if os.path.isdir("/dev/shm") and os.statvfs("/dev/shm").f_bfree > 0:
        return tempfile.mkdtemp(prefix="tokend-bench-", dir="/dev/shm")
    return os.path.join(d, "out")


def run_storm(args, work, certs, nginx, run, count, idle):
    d = tempfile.mkdtemp(prefix="storm-%d-" % run, dir=work)
    out_dir = token_dir(d)
    acc = write_accounts(d, nginx, certs, count, 3600, out_dir)
    t = Tokend(args.tokend, d, acc)
    ready = t.wait_ready()
    files = len(os.listdir(out_dir))
    if files != count:
        with open(os.path.join(d, "tokend.log")) as f:
            tail = f.read()[-3000:]
        raise RuntimeError("%d token files for %d accounts; tokend's log:\n%s"
                           % (files, count, tail))
    res = {"ready": ready, "hwm_kib": t.status("VmHWM"),
           "rss_kib": t.status("VmRSS")}
    if idle:
        time.sleep(2)
        c0 = t.ctx_switches()
        time.sleep(IDLE_SECONDS)
        res["idle_per_s"] = (t.ctx_switches() - c0) / IDLE_SECONDS
    if args.sockread and count > 0:
        name = "a00000"
        out = subprocess.run([args.sockread, t.sock, name,
                              os.path.join(out_dir, name + ".token"), "2"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("sockread: " + out.stderr)
        for line in out.stdout.split("\n"):
            if line:
                mode, rate = line.split()
                res["reads_" + mode] = float(rate)
    t.stop()
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    return res


def run_wave(args, work, certs, nginx, run):
    """10,000 tokens of 60 s, obtained in one storm, refreshed in one wave
    45 s later (ratio 0.75), spread by up to 10 % of 60 s."""
    d = tempfile.mkdtemp(prefix="wave-%d-" % run, dir=work)
    out_dir = token_dir(d)
    acc = write_accounts(d, nginx, certs, ACCOUNTS, 60, out_dir)
    t = Tokend(args.tokend, d, acc)
    t.wait_ready()
    start = time.time()
    time.sleep(25)                    # storm over, wave not begun
    cpu0, mark = t.cpu_seconds(), time.time()
    time.sleep(30)                    # the wave: 39 to 45 s after each token
    cpu1, end = t.cpu_seconds(), time.time()
    t.stop()
    reqs = [r for r in nginx.requests() if mark <= r[0] < end]
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    if len(reqs) < ACCOUNTS * 0.9:
        raise RuntimeError("only %d refreshes in the wave" % len(reqs))
    # nginx logs whole milliseconds: a request may start and end in the
    # same one, so at equal times starts count before ends
    events = sorted([(s, -1) for s, _ in reqs] + [(e, 1) for _, e in reqs])
    cur = peak = 0
    for _, step in events:
        cur -= step
        peak = max(peak, cur)
    buckets = {}
    for s, _ in reqs:
        buckets[int(s * 10)] = buckets.get(int(s * 10), 0) + 1
    starts = sorted(s for s, _ in reqs)
    return {"wave_requests": len(reqs), "wave_peak_in_flight": peak,
            "wave_busiest_100ms": max(buckets.values()),
            "wave_spread_s": starts[-1] - starts[0],
            "cpu_us_per_refresh": (cpu1 - cpu0) * 1e6 / len(reqs),
            "wave_offset_s": starts[0] - start}


def spawn_read(argv):
    """Seconds from spawn to exit of argv, its stdout read from a pipe to
    the end: what a script's $(...) waits for. Returns (seconds, output)."""
    r, w = os.pipe()
    try:
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_CLOSE, r)])
        os.close(w)
        w = -1
        out = []
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            out.append(chunk)
        _, status = os.waitpid(pid, 0)
        took = time.perf_counter() - t0
    finally:
        os.close(r)
        if w != -1:
            os.close(w)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("%s exited %d" % (argv, status))
    return took, b"".join(out)


def run_tokenctl(args, work):
    """tokenctl token NAME against cat of NAME's token file, alternated,
    both answers checked against the token."""
    d = tempfile.mkdtemp(prefix="tokenctl-", dir=work)
    out_dir = token_dir(d)
    acc = os.path.join(d, "accounts")
    os.makedirs(acc)
    token = "bench-" + os.urandom(16).hex()
    with open(os.path.join(d, "static.token"), "w") as f:
        f.write(token + "\n")
    path = os.path.join(out_dir, "s.token")
    with open(os.path.join(acc, "s.conf"), "w") as f:
        f.write("[account]\ngrant = static\ntoken_file = %s/static.token\n"
                "[file]\npath = %s\n" % (d, path))
    t = Tokend(args.tokend, d, acc)
    res = {}
    try:
        t.wait_ready()
        ctl = [args.tokenctl, "--socket", t.sock, "token", "s"]
        cat = ["/bin/cat", path]
        times = {"ctl": [], "cat": []}
        started = time.monotonic()
        for i in range(CTL_ITERATIONS):
            # alternate which goes first, so neither gets the warm slot
            for name in (("ctl", "cat") if i % 2 == 0 else ("cat", "ctl")):
                took, got = spawn_read(ctl if name == "ctl" else cat)
                if got.rstrip(b"\n") != token.encode():
                    raise RuntimeError("%s printed %r" % (name, got[:80]))
                times[name].append(took)
            if time.monotonic() - started > CTL_SECONDS_MAX:
                log("tokenctl: stopped after %d iterations" % (i + 1))
                break
        res["ctl_ms"] = med(times["ctl"]) * 1000
        res["cat_ms"] = med(times["cat"]) * 1000
        res["ctl_ratio"] = res["ctl_ms"] / res["cat_ms"]
        res["ctl_n"] = len(times["ctl"])
    finally:
        t.stop()
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
    return res


def med(values):
    return statistics.median(values)


def tokenctl_lines(rows):
    return [
        "| `tokenctl token NAME`, spawn to exit (median of %d) | %.2f ms | %s | - |"
        % (rows["ctl_n"][0], med(rows["ctl_ms"]), " ".join("%.2f" % v for v in rows["ctl_ms"])),
        "| `cat` of the token file, spawn to exit (median of %d) | %.2f ms | %s | - |"
        % (rows["ctl_n"][0], med(rows["cat_ms"]), " ".join("%.2f" % v for v in rows["cat_ms"])),
        "| tokenctl token / cat (medians) | %.2f | %s | <= 1.5 |"
        % (med(rows["ctl_ratio"]), " ".join("%.2f" % v for v in rows["ctl_ratio"])),
    ]


def run_assertion(args):
    """bench/assertion.c's figures: {ALG: (cpu_us, wall_us, n, [cpu_us
    of each round])}, in the order it printed them."""
    out = subprocess.run([args.assertion, str(ASSERTION_ROUNDS),
                          str(ASSERTION_MS)], capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError("assertion: " + out.stderr)
    res = {}
    for line in out.stdout.split("\n"):
        if line:
            alg, cpu, wall, n, *rounds = line.split()
            res[alg] = (float(cpu), float(wall), int(n),
                        [float(v) for v in rounds])
    if "ES256" not in res or len(res) != len(ASSERTION_KEYS):
        raise RuntimeError("assertion printed:\n" + out.stdout)
    return res


def assertion_lines(res, refresh_us, refresh_from):
    es = res["ES256"][3]
    lines = []
    for alg, (cpu, wall, n, rounds) in res.items():
        lines.append(
            "| %s (%s) signed assertion, CPU (wall) each; %d rounds of %d "
            "| %.1f us (%.1f us) | %s | - |"
            % (alg, ASSERTION_KEYS[alg], len(rounds), n, cpu, wall,
               " ".join("%.1f" % v for v in rounds)))
    for alg, (_, _, _, rounds) in res.items():
        if alg != "ES256":
            ratios = [a / b for a, b in zip(rounds, es)]
            lines.append("| %s / ES256, per assertion (ratios within each "
                         "round) | %.2f | %s | - |"
                         % (alg, med(ratios),
                            " ".join("%.2f" % v for v in ratios)))
    for alg, (cpu, _, _, _) in res.items():
        lines.append("| %s assertion / CPU per refresh (%.0f us, %s) | %.3f "
                     "| | - |" % (alg, refresh_us, refresh_from,
                                  cpu / refresh_us))
    return lines


def write_table(args, lines):
    table = "\n".join(["| figure | median | runs | target |",
                        "|---|---|---|---|"] + lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokend", default=os.path.join(ROOT, "build/tokend"))
    ap.add_argument("--sockread", default=os.path.join(ROOT, "build/sockread"))
    ap.add_argument("--tokenctl", default=os.path.join(ROOT, "build/tokenctl"))
    ap.add_argument("--assertion",
                    default=os.path.join(ROOT, "build/assertion"))
    ap.add_argument("--only", choices=["tokenctl", "assertion", "fleet"],
                    help="run only this figure (tokenctl, assertion: no "
                    "nginx needed)")
    ap.add_argument("--out", default="")
    ap.add_argument("--results", default="",
                    help="fleet: replace the Fleet mode section of this file")
    args = ap.parse_args()
    if args.only == "fleet":
        return run_fleet(args, [])
    if args.only == "assertion":
        log("signed assertions, %d rounds" % ASSERTION_ROUNDS)
        write_table(args, assertion_lines(run_assertion(args), REFRESH_CPU_US,
                                          "bench/RESULTS.md"))
        return 0
    work = tempfile.mkdtemp(prefix="tokend-bench-")
    if args.only == "tokenctl":
        rows = {}
        try:
            for run in range(RUNS):
                log("run %d/%d: tokenctl against cat" % (run + 1, RUNS))
                for k, v in run_tokenctl(args, work).items():
                    rows.setdefault(k, []).append(v)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        write_table(args, tokenctl_lines(rows))
        return 0
    certs = os.path.join(work, "certs")
    subprocess.run(["sh", os.path.join(ROOT, "tests/mkcerts.sh"), certs],
                   check=True, stdout=subprocess.DEVNULL)
    n3600 = Nginx(work, certs, 3600)
    n60 = Nginx(work, certs, 60)
    rows = {}
    try:
        for run in range(RUNS):
            log("run %d/%d: ceiling" % (run + 1, RUNS))
            rows.setdefault("ceiling", []).append(ceiling(n3600, work))
            log("run %d/%d: one account" % (run + 1, RUNS))
            one = run_storm(args, work, certs, n3600, run, 1, idle=False)
            log("run %d/%d: %d accounts" % (run + 1, RUNS, ACCOUNTS))
            many = run_storm(args, work, certs, n3600, run, ACCOUNTS,
                             idle=True)
            rows.setdefault("ready", []).append(many["ready"])
            rows.setdefault("ratio", []).append(
                many["ready"] / (ACCOUNTS / rows["ceiling"][-1]))
            rows.setdefault("per_account", []).append(
                (many["hwm_kib"] - one["hwm_kib"]) * 1024 / ACCOUNTS
                - TOKEN_BYTES)
            rows.setdefault("hwm", []).append(many["hwm_kib"])
            rows.setdefault("hwm_one", []).append(one["hwm_kib"])
            rows.setdefault("idle", []).append(many["idle_per_s"])
            for mode in ("file", "keepalive", "connect"):
                rows.setdefault("reads_" + mode, []).append(
                    many["reads_" + mode])
            rows.setdefault("reads_ratio", []).append(
                many["reads_keepalive"] / many["reads_file"])
            log("run %d/%d: refresh wave" % (run + 1, RUNS))
            wave = run_wave(args, work, certs, n60, run)
            for k, v in wave.items():
                rows.setdefault(k, []).append(v)
            log("run %d/%d: tokenctl against cat" % (run + 1, RUNS))
            for k, v in run_tokenctl(args, work).items():
                rows.setdefault(k, []).append(v)
        # nginx idle, no tokend: the machine as quiet as this run has it
        log("signed assertions, %d rounds" % ASSERTION_ROUNDS)
        assertions = run_assertion(args)
    finally:
        n3600.stop()
        n60.stop()
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "| nginx ceiling, token requests/s (h2load --h1, %d kept-alive connections) | %.0f | %s | - |"
        % (IN_FLIGHT, med(rows["ceiling"]), " ".join("%.0f" % v for v in rows["ceiling"])),
        "| start-up storm: exec to READY=1, %d accounts | %.2f s | %s | <= 3 s |"
        % (ACCOUNTS, med(rows["ready"]), " ".join("%.2f" % v for v in rows["ready"])),
        "| storm time / nginx ceiling time for %d requests | %.2f | %s | - |"
        % (ACCOUNTS, med(rows["ratio"]), " ".join("%.2f" % v for v in rows["ratio"])),
        "| peak RSS per account beyond the token (%d B) | %.0f B | %s | <= 4096 B |"
        % (TOKEN_BYTES, med(rows["per_account"]), " ".join("%.0f" % v for v in rows["per_account"])),
        "| peak RSS, %d accounts / 1 account | %.0f / %.0f KiB | | - |"
        % (ACCOUNTS, med(rows["hwm"]), med(rows["hwm_one"])),
        "| idle context switches/s over %d s | %.2f | %s | 0 between refreshes |"
        % (IDLE_SECONDS, med(rows["idle"]), " ".join("%.2f" % v for v in rows["idle"])),
        "| refresh wave: requests seen by nginx | %.0f | %s | %d |"
        % (med(rows["wave_requests"]), " ".join("%.0f" % v for v in rows["wave_requests"]), ACCOUNTS),
        "| refresh wave: peak requests in flight at nginx | %.0f | %s | <= %d |"
        % (med(rows["wave_peak_in_flight"]), " ".join("%.0f" % v for v in rows["wave_peak_in_flight"]), IN_FLIGHT),
        "| refresh wave: spread of request starts | %.1f s | %s | ~ jitter (6 s) |"
        % (med(rows["wave_spread_s"]), " ".join("%.1f" % v for v in rows["wave_spread_s"])),
        "| refresh wave: busiest 100 ms | %.0f | %s | - |"
        % (med(rows["wave_busiest_100ms"]), " ".join("%.0f" % v for v in rows["wave_busiest_100ms"])),
        "| CPU per refresh (utime+stime over the wave) | %.0f us | %s | - |"
        % (med(rows["cpu_us_per_refresh"]), " ".join("%.0f" % v for v in rows["cpu_us_per_refresh"])),
        "| token file reads/s (open, read, close) | %.0f | %s | - |"
        % (med(rows["reads_file"]), " ".join("%.0f" % v for v in rows["reads_file"])),
        "| socket reads/s, keep-alive | %.0f | %s | >= 50 %% of file |"
        % (med(rows["reads_keepalive"]), " ".join("%.0f" % v for v in rows["reads_keepalive"])),
        "| socket reads/s, keep-alive / file | %.0f %% | %s | >= 50 %% |"
        % (100 * med(rows["reads_ratio"]), " ".join("%.0f%%" % (100 * v) for v in rows["reads_ratio"])),
        "| socket reads/s, a connection per read | %.0f | %s | - |"
        % (med(rows["reads_connect"]), " ".join("%.0f" % v for v in rows["reads_connect"])),
    ] + tokenctl_lines(rows) + assertion_lines(
        assertions, med(rows["cpu_us_per_refresh"]), "this run's wave")
    write_table(args, lines)
    return run_fleet(args, lines)


def run_fleet(args, lines):
    """The fleet figures (bench/fleet.py), after the others' table."""
    import fleet
    log("fleet mode")
    tab, text, _ = fleet.bench(args)
    print(tab)
    if args.out:
        with open(args.out, "w") as f:
            if lines:
                f.write("\n".join(["| figure | median | runs | target |",
                                   "|---|---|---|---|"] + lines) + "\n\n")
            f.write(text)
    if args.results:
        fleet.replace_section(args.results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
