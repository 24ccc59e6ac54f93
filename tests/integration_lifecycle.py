#!/usr/bin/env python3
"""A token's life (issue 11): how often it is refreshed, that the chosen
refresh time survives a restart, that its end is never silent, what
the status and the metrics say about it, and that the shipped alert rules
(conf/prometheus/tokend-rules.yml) ask only for what /metrics exports.

    python3 tests/integration_lifecycle.py --tokend build/tokend --tokenctl build/tokenctl
                                           [-k SUBSTRING] [-j N] [--timeout S] [--keep]

The harness, its options and its output are those of tests/integration.py.
Python standard library only.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from integration import (  # noqa: E402  (the harness lives next door)
    TestSkipped, check, fast_refresh, main, parse_rfc3339_utc, read_raw,
    read_text,
    rfc_account, rfc_issuer, status_of, wait_requests, write_file)

DEFAULT_REFRESH = ("refresh", {})       # every [refresh] key at its default


def hook_script(t, name):
    """An on_failure program that appends "REASON ACCOUNT EXPIRES_AT" to a
    file; returns (program, file)."""
    out = t.path(name + ".runs")
    prog = t.path(name + ".sh")
    write_file(prog, "#!/bin/sh\necho \"$TOKEND_REASON $TOKEND_ACCOUNT "
               "$TOKEND_EXPIRES_AT\" >> %s\n" % out, mode=0o755)
    return prog, out


def hook_runs(path):
    return [line.split() for line in (read_text(path) or "").splitlines()]


def metrics(d):
    status, _, body = d.http("GET", "/metrics")
    check(status == 200, "GET /metrics: %d" % status)
    return body.decode()


METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? '
                         r'(-?[0-9.e+]+)$')


def parse_metrics(text):
    """{(name, labels): value}, after checking the text format as
    `promtool check metrics` would mind most: every sample follows the
    HELP and TYPE of its name, counters end in _total, no name twice."""
    samples, typed, seen_types = {}, {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            check(name not in typed, "TYPE of %s twice" % name)
            check(kind in ("gauge", "counter"), "type %r" % kind)
            check(kind != "counter" or name.endswith("_total"),
                  "counter %s does not end in _total" % name)
            typed[name] = kind
            seen_types.append(name)
            continue
        m = METRIC_LINE.match(line)
        check(m, "not a sample line: %r" % line)
        check(seen_types and seen_types[-1] == m.group(1),
              "sample %s outside its TYPE block" % m.group(1))
        key = (m.group(1), m.group(2) or "")
        check(key not in samples, "sample %s%s twice" % key)
        samples[key] = float(m.group(3))
    return samples


def test_default_margin_refreshes_once_per_half_lifetime(t):
    """A 4 s token with no [refresh] values (margin 5m) is refreshed about
    every 2 s, never every second (94 requests in 95 s for a 120 s token
    before issue 11); the log says once that the margin was cut."""
    iss = rfc_issuer(t, lifetime=4)
    d = t.daemon()
    d.write_account("half", rfc_account(t, d, iss, grant="client_credentials",
                                        refresh=DEFAULT_REFRESH))
    d.start()
    first = wait_requests(d, iss, 1, 10, "the first token")[0]
    t0, window = first["t"], 12.0
    d.wait_for(lambda: [e for e in iss.log() if e["t"] >= t0 + window], 30,
               "a request after the %gs window" % window)
    inside = [e for e in iss.log() if t0 <= e["t"] < t0 + window]
    # once per half lifetime: 6 in 12 s, 7 with the first; every second
    # (the old schedule) is 12
    check(len(inside) <= 8, "%d requests in %gs for a 4 s token, want at most "
          "about 2 per lifetime (gaps %s)" % (
              len(inside), window, ["%.2f" % (b["t"] - a["t"]) for a, b in
                                    zip(inside, inside[1:])]))
    gaps = [b["t"] - a["t"] for a, b in zip(inside, inside[1:])]
    check(gaps and min(gaps) >= 1.8, "a refresh %.2fs after the previous "
          "token (floor: half of 4 s)" % min(gaps or [0]))
    cut = re.findall(r"margin 5m leaves less than half of a 4s lifetime; "
                     r"refreshing no sooner than 2s", d.log_text())
    check(len(cut) == 1, "the margin cut was logged %d times, want once"
          % len(cut))


def test_ratio_below_half_is_honoured(t):
    """ratio = 0.25 is asked for: a 8 s token is refreshed after 2 s."""
    iss = rfc_issuer(t, lifetime=8)
    d = t.daemon()
    d.write_account("quick", rfc_account(t, d, iss, grant="client_credentials",
                                         refresh=fast_refresh("5m", ratio="0.25")))
    d.start()
    log = wait_requests(d, iss, 3, 20, "three tokens")
    gaps = [b["t"] - a["t"] for a, b in zip(log, log[1:3])]
    check(all(1.8 <= g <= 3.5 for g in gaps), "gaps %s, want ~2 s (ratio "
          "0.25 of 8 s)" % ["%.2f" % g for g in gaps])


def test_restart_keeps_refresh_time(t):
    """The drawn refresh time is saved with the token: a restart shows the
    same next_refresh_at (jitter is not drawn again) and asks for nothing;
    a state file from before refresh_at still loads."""
    iss = rfc_issuer(t, lifetime=3600)
    d = t.daemon()
    d.write_account("keep", rfc_account(t, d, iss, grant="client_credentials",
                                        refresh=("refresh", {"jitter": "0.5"})))
    d.start()
    d.wait_for(lambda: (status_of(d, "keep") or {}).get("state") == "fresh",
               10, "a token")
    before = status_of(d, "keep")
    state = d.state("keep")
    check(state and state.get("refresh_at_ms"), "no refresh_at_ms in the "
          "state file: %s" % sorted(state or {}))
    check(parse_rfc3339_utc(before["next_refresh_at"]) ==
          state["refresh_at_ms"] // 1000,
          "next_refresh_at %s, state file refresh_at_ms %s" % (
              before["next_refresh_at"], state["refresh_at_ms"]))
    for n in range(3):
        d.stop()
        d.start()
        d.wait_for(lambda: (status_of(d, "keep") or {}).get("state") ==
                   "fresh", 10, "the saved token after restart %d" % (n + 1))
        after = status_of(d, "keep")
        check(after["next_refresh_at"] == before["next_refresh_at"],
              "restart %d: next refresh %s, was %s" % (
                  n + 1, after["next_refresh_at"], before["next_refresh_at"]))
    check(len(iss.log()) == 1, "%d requests; restarts should ask for none"
          % len(iss.log()))

    # an older state file: no refresh_at_ms; it loads, a time is drawn
    d.stop()
    del state["refresh_at_ms"]
    write_file(d.state_path("keep"), json.dumps(state), mode=0o600)
    d.start()
    d.wait_for(lambda: (status_of(d, "keep") or {}).get("state") == "fresh",
               10, "the token from the old state file")
    st = status_of(d, "keep")
    check(st["next_refresh_at"] is not None, "no refresh planned")
    check(len(iss.log()) == 1, "the old state file was not used")

    # [refresh] changed while tokend was down: the saved time (drawn at
    # 22.5-45 min with jitter 0.5) is outside what ratio 0.9 with no jitter
    # allows (54 min), so it is drawn again
    d.stop()
    d.write_account("keep", rfc_account(t, d, iss, grant="client_credentials",
                                        refresh=("refresh", {
                                            "jitter": "0", "ratio": "0.9",
                                            "margin": "1s"})))
    d.start()
    d.wait_for(lambda: (status_of(d, "keep") or {}).get("state") == "fresh",
               10, "the saved token with new [refresh] values")
    st = status_of(d, "keep")
    due = parse_rfc3339_utc(st["next_refresh_at"])
    obtained = d.state("keep")["obtained_at"]
    check(abs(due - (obtained + 0.9 * 3600)) <= 2, "next refresh %s, want "
          "0.9 of the hour after %s" % (st["next_refresh_at"], obtained))
    check(len(iss.log()) == 1, "new [refresh] values asked for a token")
    d.stop()


def test_expiry_in_an_outage_is_not_silent(t):
    """A 4 s token, then 503 (and 500) answers until well past its expiry:
    on_failure runs once with TOKEND_REASON=expired (while the account
    backs off), the log has the error line with the last error, the status
    says expired with expires_in 0; then a token again."""
    iss = rfc_issuer(t, lifetime=4)
    prog, runs = hook_script(t, "fail")
    d = t.daemon()
    d.write_account("out", rfc_account(
        t, d, iss, grant="client_credentials",
        refresh=fast_refresh(max_backoff="2s"),
        extra={}) + [("hooks", {"on_failure": prog})])
    d.start()
    first = wait_requests(d, iss, 1, 10, "the first token")[0]
    iss.faults("/token", [{"status": 503}, {"status": 500}] * 15)
    d.wait_for(lambda: hook_runs(runs), first["t"] + 20 - time.time(),
               "on_failure after the token expired")
    got = hook_runs(runs)
    check(got[0][:2] == ["expired", "out"], "hook ran with %s" % got[0])
    check(int(got[0][2]) == int(parse_rfc3339_utc(
        status_of(d, "out")["expires_at"])), "TOKEND_EXPIRES_AT %s, status "
          "says %s" % (got[0][2], status_of(d, "out")["expires_at"]))
    lines = re.findall(r"token expired at \S+; last error: (.*)", d.log_text())
    check(lines and re.search(r"HTTP 50[03]", lines[0]), "the log line at "
          "expiry: %s" % lines)
    # expired, or refreshing while a retry is on its way
    st = d.wait_for(lambda: (lambda s: s if s["state"] == "expired" else
                             None)(status_of(d, "out")), 10,
                    "state expired between retries")
    check(st["expires_in"] == 0 and st["in_flight"] is False,
          "status after expiry: %s" % st)
    n = len(iss.log())
    d.wait_for(lambda: len(iss.log()) >= n + 2, 10, "two more failed tries")
    check(len(hook_runs(runs)) == 1, "on_failure ran %d times for one "
          "expiry" % len(hook_runs(runs)))
    iss.faults("/token", [], replace=True)
    d.wait_for(lambda: (status_of(d, "out") or {}).get("state") == "fresh",
               10, "a token once the endpoint answers")
    check(len(hook_runs(runs)) == 1, "on_failure ran again: %s"
          % hook_runs(runs))


def test_one_program_two_hooks(t):
    """on_refresh and on_failure run one program with other arguments: a
    failure while the refresh hook still runs is its own run, with its own
    arguments and TOKEND_REASON (not a re-run of the refresh hook)."""
    iss = rfc_issuer(t, lifetime=3)
    out, release = t.path("hook.runs"), t.path("release")
    prog = t.path("hook.sh")
    # the refresh run holds on until the test lets it go (30 s at most)
    write_file(prog, "#!/bin/sh\necho \"$1 ${TOKEND_REASON:--}\" >> %s\n"
               "[ \"$1\" = refresh ] || exit 0\ni=0\n"
               "while [ ! -e %s ] && [ $i -lt 300 ]; do sleep 0.1; "
               "i=$((i + 1)); done\n" % (out, release), mode=0o755)
    d = t.daemon()
    d.write_account("two", rfc_account(
        t, d, iss, grant="client_credentials", refresh=fast_refresh(),
        extra={}) + [("hooks", {"on_refresh": prog + " refresh",
                                "on_failure": prog + " failure"})])
    d.start()
    wait_requests(d, iss, 1, 10, "the first token")
    iss.faults("/token", [{"status": 401, "json": {
        "error": "invalid_client"}}] * 20)
    d.wait_for(lambda: hook_runs(out)[:1] == [["refresh", "-"]], 10,
               "the refresh hook")
    try:
        d.wait_for(lambda: ["failure", "refused"] in hook_runs(out), 15,
                   "on_failure while on_refresh still runs")
    finally:
        write_file(release, "")
    check(["refresh", "refused"] not in hook_runs(out),
          "the refresh program ran with the failure's reason: %s"
          % hook_runs(out))


def test_refused_credentials_reason(t):
    """A wrong password: on_failure with TOKEND_REASON=refused."""
    iss = rfc_issuer(t, lifetime=60)
    prog, runs = hook_script(t, "refused")
    d = t.daemon()
    d.write_account("bad", rfc_account(
        t, d, iss, extra={"password_file": d.write_secret(
            "bad.password", "not-the-password-9q")})
        + [("hooks", {"on_failure": prog})])
    d.start()
    d.wait_for(lambda: hook_runs(runs), 10, "on_failure")
    check(hook_runs(runs)[0][:2] == ["refused", "bad"], "hook ran with %s"
          % hook_runs(runs)[0])
    check((status_of(d, "bad") or {}).get("state") == "failed", "state %s"
          % status_of(d, "bad"))


def test_status_fields_without_a_token(t):
    """An account that never had a token: `refreshing` with in_flight true
    and no next_refresh_at while its request hangs, `backoff` (never
    `expired`) while it waits to retry; the new keys are there, null where
    nothing is known."""
    iss = rfc_issuer(t, lifetime=60)
    iss.faults("/token", [{"hang": 3}, {"status": 503}, {"status": 503}])
    d = t.daemon()
    d.write_account("new", rfc_account(t, d, iss, grant="client_credentials",
                                       refresh=fast_refresh(max_backoff="2s")))
    d.start()
    st = d.wait_for(lambda: status_of(d, "new"), 10, "the account")
    for key in ("last_success_at", "expires_in", "file_error",
                "file_failures", "in_flight"):
        check(key in st, "no %s in %s" % (key, st))
    check(st["state"] == "refreshing" and st["in_flight"] is True and
          st["next_refresh_at"] is None, "while the first request hangs: %s"
          % st)
    check(st["last_success_at"] is None and st["expires_in"] is None and
          st["file_error"] is None and st["file_failures"] == 0,
          "nothing known yet: %s" % st)
    states = set()

    def fresh():
        s = status_of(d, "new")
        states.add(s["state"])
        if s["state"] == "backoff":
            check(s["in_flight"] is False and s["next_refresh_at"],
                  "backing off: %s" % s)
        return s if s["state"] == "fresh" else None
    st = d.wait_for(fresh, 20, "a token after the failures")
    check("expired" not in states, "an account without a token showed "
          "expired (states %s)" % sorted(states))
    check("backoff" in states, "never showed backoff (states %s)"
          % sorted(states))
    now = time.time()
    check(abs(parse_rfc3339_utc(st["last_success_at"]) - now) < 10,
          "last_success_at %s" % st["last_success_at"])
    check(55 <= st["expires_in"] <= 60, "expires_in %s" % st["expires_in"])
    out = d.tokenctl("--json", "status")
    check(out.returncode in (0, 1), "tokenctl --json status: %d %s" % (
        out.returncode, out.stderr))
    rows = [r for r in json.loads(out.stdout) if r["account"] == "new"]
    check(rows and rows[0]["in_flight"] is False and
          rows[0]["expires_in"] is not None, "tokenctl --json status: %s"
          % out.stdout)


def test_file_errors_in_status_and_metrics(t):
    """A token file whose folder has gone: file_error and file_failures in
    the status, tokend_file_write_failures_total in /metrics; once the
    folder is back the retry writes it and file_error is null again. The
    other new metrics are there and well formed."""
    iss = rfc_issuer(t, lifetime=4)
    folder = t.out("sinkdir")
    os.makedirs(folder, exist_ok=True)
    d = t.daemon()
    d.write_account("fe", rfc_account(
        t, d, iss, grant="client_credentials",
        files=[{"path": os.path.join(folder, "fe.token")}]))
    d.start()
    d.wait_for(lambda: read_raw(os.path.join(folder, "fe.token")), 10,
               "the token file")
    m = parse_metrics(metrics(d))
    label = '{account="fe"}'
    last = m.get(("tokend_last_success_timestamp_seconds", label))
    check(last and abs(last - time.time()) < 10, "last success %s" % last)
    left = m.get(("tokend_token_expires_in_seconds", label))
    check(left is not None and 0 <= left <= 4, "expires in %s" % left)
    check(m.get(("tokend_file_write_failures_total", label)) == 0,
          "file write failures before any failed: %s" % m)
    for name in ("tokend_token_expiry_timestamp_seconds",
                 "tokend_refreshes_total", "tokend_refresh_failures_total"):
        check((name, label) in m, "the old metric %s is gone" % name)

    os.rename(folder, folder + ".away")
    st = d.wait_for(lambda: (lambda s: s if s["file_failures"] >= 1 else
                             None)(status_of(d, "fe")), 15,
                    "a failed token file write")
    check(st["file_error"] and "fe.token" in st["file_error"],
          "file_error %r" % st["file_error"])
    m = parse_metrics(metrics(d))
    check(m.get(("tokend_file_write_failures_total", label), 0) >= 1,
          "tokend_file_write_failures_total %s" %
          m.get(("tokend_file_write_failures_total", label)))
    os.rename(folder + ".away", folder)
    d.wait_for(lambda: status_of(d, "fe")["file_error"] is None, 20,
               "file_error to clear once the folder is back")
    d.stop()


def test_metrics_pass_promtool(t):
    """Prometheus's own linter finds nothing to say about /metrics, with
    every metric family present (a fresh account, one failing with a
    Retry-After, a file that cannot be written)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise TestSkipped("no promtool (Debian package prometheus; "
                          "make deps installs it)")
    ok = rfc_issuer(t)
    bad = rfc_issuer(t)
    bad.faults("/token", [{"status": 503, "retry_after": "7"}] * 50)
    d = t.daemon()
    d.write_account("ok", rfc_account(t, d, ok, grant="client_credentials",
                                      files=[{"path": t.out("ok.token")}]))
    d.write_account("down", rfc_account(t, d, bad,
                                        grant="client_credentials"))
    d.write_account("nofile", rfc_account(
        t, d, ok, grant="client_credentials",
        files=[{"path": os.path.join(t.out("gone"), "x.token")}]))
    d.start()
    d.wait_for(lambda: (status_of(d, "down") or {}).get("failures", 0) >= 1
               and (status_of(d, "nofile") or {}).get("file_failures", 0)
               >= 1 and read_raw(t.out("ok.token")), 15,
               "a fresh, a failing and an unwritable account")
    text = metrics(d)
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    check(r.returncode == 0, "promtool check metrics: %s" %
          r.stdout.decode(errors="replace").strip())
    d.stop()


RULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                     "conf", "prometheus", "tokend-rules.yml")
TOKEND_METRIC = re.compile(r"\btokend_[a-z_]+\b")
LABEL_MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"')
LABEL_LIST = re.compile(r"\b(?:ignoring|on|by|without)\s*\(([^)]*)\)")
SCRAPE_LABELS = {"instance", "job"}     # Prometheus adds them, not tokend


def alert_rules(text):
    """[(alert, expr, annotation text)] from a rules file, read as lines
    (no YAML library): `expr:` inline or as a block, whatever follows an
    `annotations:` key up to the next rule."""
    rules, rule, key, indent = [], None, None, 0
    for line in text.splitlines():
        stripped = line.strip()
        depth = len(line) - len(line.lstrip())
        if not stripped or stripped.startswith("#"):
            continue
        m = re.match(r"- alert:\s*(\S+)", stripped)
        if m:
            rule = [m.group(1), "", ""]
            rules.append(rule)
            key = None
            continue
        if rule is None:
            continue
        m = re.match(r"(expr|annotations|labels|for):\s*(.*)", stripped)
        if m and (key is None or depth <= indent):
            key, indent = m.group(1), depth
            if key == "expr" and m.group(2) not in ("|", ">", "|-", ">-"):
                rule[1] += m.group(2) + "\n"
            continue
        if key == "expr" and depth > indent:
            rule[1] += stripped + "\n"
        elif key == "annotations":
            rule[2] += stripped + "\n"
    return [tuple(r) for r in rules]


def rules_problems(text, samples):
    """What the rules in `text` ask of /metrics that `samples` (from
    parse_metrics) lacks: a tokend_* name no series has, a label a
    matcher, ignoring() or on() names that no series of the expression
    carries, a label value matched that no series has, or a $labels.X in
    an annotation that the expression's series do not all carry."""
    series = {}
    for name, labels in samples:
        series.setdefault(name, []).append(
            dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)))
    problems = []
    for alert, expr, notes in alert_rules(text):
        names = sorted(set(TOKEND_METRIC.findall(expr)))
        if not expr.strip():
            problems.append("%s: no expr" % alert)
        for name in names:
            if name not in series:
                problems.append("%s: /metrics has no %s" % (alert, name))
        rows = [row for name in names for row in series.get(name, [])]
        have = {label for row in rows for label in row}
        for sel in re.findall(r"\b(tokend_[a-z_]+)\{([^}]*)\}", expr):
            for label, value in LABEL_MATCHER.findall(sel[1]):
                values = {row.get(label) for row in series.get(sel[0], [])}
                wanted = value.split("|") if "=~" in sel[1] else [value]
                for v in wanted:
                    if v not in values:
                        problems.append("%s: no %s{%s=\"%s\"} in /metrics"
                                        % (alert, sel[0], label, v))
        for group in LABEL_LIST.findall(expr):
            for label in filter(None, (x.strip() for x in group.split(","))):
                if label not in have | SCRAPE_LABELS:
                    problems.append("%s: no series of %s has label %s"
                                    % (alert, names, label))
        for label in set(re.findall(r"\$labels\.(\w+)", notes)):
            if label in SCRAPE_LABELS or not names:
                continue
            if not rows or not all(label in row for row in rows):
                problems.append("%s: the annotations name $labels.%s, not "
                                "on every series of %s" % (alert, label, names))
    return problems


def test_alert_rules_use_what_metrics_export(t):
    """Every tokend_* name in the expr of conf/prometheus/tokend-rules.yml
    is in a real daemon's /metrics, and so are the labels and label values
    the rules match on and name in their annotations. A planted rule on a
    metric tokend lacks, a state it does not have or a label it does not
    set is caught, so the check can fail."""
    text = read_text(RULES)
    check(text, "cannot read %s" % RULES)
    rules = alert_rules(text)
    check(len(rules) >= 5 and all(expr for _, expr, _ in rules) and
          sum(bool(TOKEND_METRIC.search(e)) for _, e, _ in rules) >= 4,
          "the rules read as %s" % rules)
    iss = rfc_issuer(t, lifetime=3600)
    d = t.daemon()
    # a client certificate too (presented if asked: this issuer does not),
    # for the certificate's expiry
    key, crt = t.out("client.key"), t.out("client.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                    "-subj", "/CN=client", "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    d.write_account("acct", rfc_account(
        t, d, iss, grant="client_credentials",
        files=[{"path": t.out("a.token")}],
        extra={"client_key_file": key, "client_cert_file": crt}))
    d.start()
    d.wait_for(lambda: read_raw(t.out("a.token")), 10, "the token file")
    samples = parse_metrics(metrics(d))
    # the fleet's alerts ask for what only a daemon with [fleet] exports:
    # integration_fleet.py checks those against one
    problems = [p for p in rules_problems(text, samples)
                if not p.startswith("TokendFleet")]
    check(not problems, "the rules ask for what /metrics lacks: %s"
          % "; ".join(problems))
    for planted, why in (
            ("tokend_token_expires_in_secs > 0", "a metric name"),
            ('tokend_account_state{state="stale"} == 1', "a state"),
            ("tokend_refreshes_total unless ignoring(endpoint) up",
             "a label")):
        bad = ("groups:\n  - name: t\n    rules:\n      - alert: Planted\n"
               "        expr: %s\n" % planted)
        check(rules_problems(bad, samples), "a rule with %s tokend does "
              "not export passed: %s" % (why, planted))
    d.stop()


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="A token's life: schedule, expiry, status."))
