#!/usr/bin/env python3
"""`tokend --check`, start and reload against mistakes that used to pass the
check and fail at run time (issue 11): each is a FILE:LINE: message from the
real tokend, the same at --check, at start and at a reload (which keeps the
old configuration running).

    python3 tests/integration_check.py --tokend build/tokend --tokenctl build/tokenctl
                                       [-k SUBSTRING] [-j N] [--timeout S] [--keep]

The harness, its options and its output are those of tests/integration.py.

Python standard library only.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    check, fast_refresh, main, read_raw, rfc_account, rfc_issuer, status_of,
    wait_requests, write_file)

BAD_URL = "https://127.0.0.1:1/token"


def cc_account(d, name, *rest, client_id="c"):
    """Raw INI text: a client_credentials account, its secret in a file,
    lines 1-5; `rest` lines follow from line 6."""
    secret = d.write_secret(name + ".secret", "check-secret-%s-2024" % name)
    head = ["[account]",                                   # 1
            "grant = client_credentials",                  # 2
            "token_url = " + BAD_URL,                      # 3
            "client_id = %s" % client_id if client_id else ";",   # 4
            "client_secret_file = " + secret]              # 5
    return "\n".join(head + list(rest)) + "\n"


def problems(err, name, line, words, warning=False):
    """The lines of --check's stderr that are NAME.conf:LINE: (errors, or
    warnings) and hold every word."""
    tag = "%s.conf:%d: " % (name, line)
    out = []
    for x in err.splitlines():
        if tag not in x or (": warning:" in x) != warning:
            continue
        if all(w in x for w in words):
            out.append(x)
    return out


def expect_check(d, rc_want, found, what):
    """Run --check: exit status rc_want, and found(stderr) true."""
    rc, err = d.check_config()
    check(rc == rc_want, "%s: tokend --check exited %d, want %d:\n%s"
          % (what, rc, rc_want, err))
    check(found(err), "%s: not reported as expected:\n%s" % (what, err))
    return err


def test_check_same_file_path_twice_in_one_account(t):
    """Two [file] sections with one path: the second one's path line."""
    d = t.daemon()
    out = t.out("one.token")
    d.write_account("dup", raw=cc_account(
        d, "dup",
        "[file]",                                          # 6
        "path = " + out,                                   # 7
        "[file]",                                          # 8
        "format = json",                                   # 9
        "path = " + os.path.dirname(out) + "/./one.token"))  # 10
    expect_check(d, 1, lambda err: problems(
        err, "dup", 10, ["path %s" % out, "[file] at line 7"]),
        "a path written twice")


def test_check_two_accounts_one_file(t):
    """Two accounts writing one file: the later one's line, naming the
    first account and its FILE:LINE."""
    d = t.daemon()
    out = t.out("shared.token")
    d.write_account("a", raw=cc_account(d, "a", "[file]", "path = " + out))
    d.write_account("b", raw=cc_account(d, "b", "", "[file]", "format = env",
                                        "path = " + out))   # line 9
    expect_check(d, 1, lambda err: problems(
        err, "b", 9, ["path %s" % out, "account a",
                      "%s:7" % d.account_path("a")]), "one file, two accounts")


def test_check_shared_refresh_token_file(t):
    """Two accounts reading one refresh_token_file (spelled differently):
    the later one is refused, naming the first."""
    d = t.daemon()
    rt = d.write_secret("shared.rt", "check-shared-refresh-token-77")
    os.makedirs(os.path.join(d.accounts_dir, "sub"))
    text = ("[account]\ngrant = refresh_token\ntoken_url = %s\n"
            "client_id = public\nrefresh_token_file = %s\n")
    d.write_account("r1", raw=text % (BAD_URL, rt))
    d.write_account("r2", raw=text % (BAD_URL, "sub/../" + rt))
    expect_check(d, 1, lambda err: problems(
        err, "r2", 5, ["refresh_token_file", "account r1's too",
                       "%s:5" % d.account_path("r1")]), "a shared refresh token")


def test_check_ca_file_must_hold_certificates(t):
    """ca_file is read at --check: text, a private key and a missing file
    are errors at its line; the test CA passes."""
    d = t.daemon()
    write_file(t.path("notes.txt"), "not a certificate\n")
    key = os.path.join(t.certs, "server.key")
    check(os.path.exists(key), "harness: no %s" % key)
    for name, ca, words in [
            ("text", t.path("notes.txt"), ["holds no PEM certificate"]),
            ("key", key, ["holds no PEM certificate"]),
            ("gone", t.path("gone.pem"), ["cannot read", "No such file"])]:
        d.write_account(name, raw=cc_account(d, name, "ca_file = " + ca))
    d.write_account("good", raw=cc_account(d, "good", "ca_file = " + t.ca))
    err = expect_check(d, 1, lambda err: all(
        problems(err, n, 6, ["ca_file:"] + w) for n, w in [
            ("text", ["holds no PEM"]), ("key", ["holds no PEM"]),
            ("gone", ["No such file"])]), "bad ca_files")
    check(not [x for x in err.splitlines() if "good.conf:" in x],
          "the test CA was refused:\n%s" % err)


def test_check_warns_of_token_folders_it_cannot_write(t):
    """A token file's folder that does not exist, or tokend cannot write
    in: a warning at the path line, and the check still passes."""
    d = t.daemon()
    missing = t.path("nowhere", "a.token")
    ro = t.path("ro")
    os.makedirs(ro, mode=0o755)
    ok = t.out("ok.token")
    if os.geteuid() == 0:
        # root writes anywhere: tokend's user is then the owner of a
        # private state_dir (as systemd's DynamicUser= makes it)
        os.chown(d.state_dir, 65534, 65534)
        os.chown(os.path.dirname(ok), 65534, 65534)
    else:
        os.chmod(ro, 0o555)
    d.write_account("w", raw=cc_account(
        d, "w", "[file]", "path = " + missing,             # 7
        "[file]", "path = " + ro + "/b.token",             # 9
        "[file]", "path = " + ok))                         # 11
    err = expect_check(d, 0, lambda err: problems(
        err, "w", 7, ["folder %s does not exist" % os.path.dirname(missing)],
        warning=True) and problems(
        err, "w", 9, ["cannot write in folder %s" % ro], warning=True),
        "unwritable token folders")
    check(not problems(err, "w", 11, [], warning=True),
          "a writable folder was warned about:\n%s" % err)


def test_check_hook_program_must_be_executable(t):
    """on_refresh / on_failure whose program is missing, a folder or not
    executable: an error at the hook's line."""
    d = t.daemon()
    plain = t.path("plain.sh")
    write_file(plain, "#!/bin/sh\n", mode=0o644)
    good = t.path("good.sh")
    write_file(good, "#!/bin/sh\nexit 0\n", mode=0o755)
    d.write_account("h", raw=cc_account(
        d, "h", "[hooks]",
        "on_refresh = %s --flag" % t.path("missing"),      # 7
        "on_failure = " + plain))                          # 8
    d.write_account("h2", raw=cc_account(
        d, "h2", "[hooks]", "on_refresh = " + t.tmp,       # 7
        "on_failure = %s \"a b\"" % good))                 # 8
    err = expect_check(d, 1, lambda err: problems(
        err, "h", 7, ["on_refresh", "missing", "No such file"]) and problems(
        err, "h", 8, ["on_failure", "not executable"]) and problems(
        err, "h2", 7, ["on_refresh", "not a regular file"]), "bad hooks")
    check(not problems(err, "h2", 8, []), "a good hook was refused:\n%s" % err)


def test_check_client_credentials_needs_client_id(t):
    """grant = client_credentials without client_id: an error at the grant
    line (the endpoint cannot tell who is asking)."""
    d = t.daemon()
    d.write_account("noid", raw="[account]\n"
                    "grant = client_credentials\n"         # 2
                    "token_url = %s\n" % BAD_URL)
    expect_check(d, 1, lambda err: problems(
        err, "noid", 2, ["client_credentials needs client_id"]),
        "client_credentials without client_id")


def test_check_access_unknown_user_is_a_warning(t):
    """[access] users and groups that do not exist: warnings (an example is
    installed before its consumer), the check passes."""
    d = t.daemon()
    d.write_account("acl", raw=cc_account(
        d, "acl", "[access]",
        "users = root tokend-no-such-user-4711",           # 7
        "groups = tokend-no-such-group-4711"))             # 8
    expect_check(d, 0, lambda err: problems(
        err, "acl", 7, ["unknown user 'tokend-no-such-user-4711'"],
        warning=True) and problems(
        err, "acl", 8, ["unknown group 'tokend-no-such-group-4711'"],
        warning=True), "unknown [access] names")


def test_check_says_when_the_margin_is_cut(t):
    """A margin above half of default_lifetime: --check says at the margin
    line that tokens will be refreshed after half their lifetime; with
    ratio below 0.5 set it is what was asked for, and nothing is said."""
    d = t.daemon()
    d.write_account("cut", raw=cc_account(
        d, "cut", "[response]", "default_lifetime = 8m",   # 7
        "[refresh]", "margin = 5m"))                       # 9
    d.write_account("asked", raw=cc_account(
        d, "asked", "[response]", "default_lifetime = 8m",
        "[refresh]", "margin = 5m", "ratio = 0.3"))
    err = expect_check(d, 0, lambda err: problems(
        err, "cut", 9, ["margin 5m is more than half of default_lifetime 8m",
                        "refreshed after half their lifetime"], warning=True),
        "a margin that is cut")
    check("asked.conf:" not in err, "ratio 0.3 was warned about:\n%s" % err)


def test_inline_hash_comment_is_not_sent(t):
    """`username = alice   # the owner` sends alice; a '#' inside a value
    (a password, a URL fragment) is kept: the password grant works."""
    password = "pa#ss;wo#rd-0815"
    iss = t.issuer({"clients": {"rfc-client": "rfc-client-secret-4711"},
                    "users": {"alice": password}})
    d = t.daemon()
    d.write_secret("rfc.secret", "rfc-client-secret-4711")
    t.add_secret(password)
    d.write_account("hash", raw="\n".join([
        "[account]",
        "grant = password",
        "token_url = %s#fragment   # where tokens come from" % iss.url(),
        "client_id = rfc-client   # the client",
        "client_secret_file = rfc.secret # its secret",
        "username = alice   # the owner",
        "password = " + password,
        "ca_file = " + t.ca,
        "[file]",
        "path = %s\t# a tab before it" % t.out("hash.token"), ""]))
    rc, err = d.check_config()
    check(rc == 0, "tokend --check exited %d:\n%s" % (rc, err))
    d.start()
    log = wait_requests(d, iss, 1, 10, "the password grant", ok_only=False)
    e = log[0]
    check(e["status"] == 200 and e["params"].get("username") == "alice",
          "want alice and 200, got %r and %s" % (e["params"].get("username"),
                                                  e["status"]))
    d.wait_for(lambda: read_raw(t.out("hash.token")), 5, "the token file")


def test_reload_reports_new_mistakes_and_keeps_running(t):
    """The checks run at reload too: a new account that writes another's
    file is reported as FILE:LINE in the log and the old configuration
    keeps its token."""
    iss = rfc_issuer(t, lifetime=3600)
    d = t.daemon()
    out = t.out("rfc.token")
    d.write_account("a", rfc_account(t, d, iss, grant="client_credentials",
                                     files=[{"path": out}]))
    d.start()
    wait_requests(d, iss, 1, 10)
    token = d.wait_for(lambda: read_raw(out), 5, "a's token file")
    d.write_account("b", raw=cc_account(d, "b", "[file]", "path = " + out))
    size = len(d.log_text())
    d.sighup()
    d.wait_for(lambda: re.search(r"b\.conf:7: path %s is written by account a"
                                 % re.escape(out), d.log_text()[size:]),
               5, "b.conf:7: in the log")
    d.wait_for(lambda: "reload failed" in d.log_text()[size:], 5,
               "the reload to be refused")
    check(status_of(d, "b") is None, "the refused account b started")
    check(read_raw(out) == token, "a's token file changed")
    check(len(iss.log()) == 1, "the refused reload made token requests")


def test_missing_credential_at_reload_says_restart(t):
    """A relative *_file is read from $CREDENTIALS_DIRECTORY; when it is
    missing there (systemd 252 loads LoadCredential= files only at start),
    --check and a reload say to restart, and the running account keeps
    its token."""
    iss = rfc_issuer(t, lifetime=3600)
    d = t.daemon()
    creds = t.path("credentials")
    os.makedirs(creds, mode=0o700)
    write_file(os.path.join(creds, "rfc.secret"), "rfc-client-secret-4711\n",
               mode=0o600)
    base = d.env

    def with_creds():
        e = base()
        e["CREDENTIALS_DIRECTORY"] = creds
        return e
    d.env = with_creds
    account = rfc_account(t, d, iss, grant="client_credentials",
                          refresh=fast_refresh("5m"))
    # the secret only in the credentials folder, by a relative name
    os.unlink(os.path.join(d.accounts_dir, "rfc.secret"))
    d.write_account("a", account)
    rc, err = d.check_config()
    check(rc == 0, "tokend --check exited %d:\n%s" % (rc, err))
    d.start()
    wait_requests(d, iss, 1, 10)
    token = d.wait_for(lambda: read_raw(t.out("rfc.token")), 5, "the token")

    # a new account whose secret went to /etc/tokend/credentials after start
    d.write_account("new", raw="[account]\ngrant = client_credentials\n"
                    "token_url = %s\nclient_id = c\n"
                    "client_secret_file = added.secret\n" % BAD_URL)   # 5
    hint = "run systemctl restart tokend"
    want = re.compile(r"new\.conf:5: client_secret_file: cannot read %s: No "
                      r"such file or directory \(systemd loads LoadCredential= "
                      r"files only when tokend starts: %s"
                      % (re.escape(os.path.join(creds, "added.secret")), hint))
    rc, err = d.check_config()
    check(rc == 1 and want.search(err), "tokend --check exited %d; want the "
          "restart hint:\n%s" % (rc, err))
    size = len(d.log_text())
    d.sighup()
    d.wait_for(lambda: want.search(d.log_text()[size:]), 5,
               "the restart hint in the log")
    check(read_raw(t.out("rfc.token")) == token, "the token changed")
    check(status_of(d, "new") is None, "the refused account started")
    check(len(iss.log()) == 1, "the refused reload made token requests")


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__))
