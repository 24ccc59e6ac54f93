#!/usr/bin/env python3
"""Recovery without surgery: the real daemon against tests/issuer.py.

    python3 tests/integration_recovery.py --tokend build/tokend --tokenctl build/tokenctl
                                          [-k SUBSTRING] [-j N] [--timeout S] [--keep]

- the endpoint's error_description in the last error;
- a refused refresh token dropped from the state file, never sent again
  after a restart;
- a new refresh token in refresh_token_file winning at reload and start;
- failed accounts retried at a reload that changes nothing;
- one daemon per state folder;
- a removed account's token files removed.

The harness, its options and its output are those of tests/integration.py.
Python standard library only.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    check, fast_refresh, main, read_json, read_raw, rfc_account, rfc_issuer,
    status_of, wait_requests, write_file)

CLIENT = ("rfc-client", "rfc-client-secret-4711")


def state_of(d, name):
    return read_json(d.state_path(name)) or {}


def last_error(d, name):
    row = status_of(d, name)
    return (row or {}).get("last_error")


def wait_state(d, name, state, timeout=10):
    return d.wait_for(lambda: (status_of(d, name) or {}).get("state") == state
                      and status_of(d, name), timeout,
                      "%s to be %s" % (name, state))


def failed_account(t, name, grant, **settings):
    """An issuer with settings, and a daemon whose account `name` fails
    its first request and would wait an hour (max_backoff) to retry."""
    iss = rfc_issuer(t, **settings)
    d = t.daemon()
    d.write_account(name, rfc_account(t, d, iss, grant=grant,
                                      refresh=fast_refresh(max_backoff="1h")))
    d.start()
    wait_state(d, name, "failed")
    return iss, d


def new_refresh_token(t, iss):
    """A live refresh token of alice's, obtained behind tokend's back."""
    status, answer = iss.token_request(
        {"grant_type": "password", "username": "alice",
         "password": "alice-password-0815"}, basic=CLIENT)
    check(status == 200 and answer.get("refresh_token"),
          "harness: no refresh token from the issuer: %d %r" % (status, answer))
    t.add_secret(answer["refresh_token"])
    return answer["refresh_token"]


def refresh_account(t, d, iss, rt, lifetime_margin="1s", max_backoff="4s"):
    """grant = refresh_token with rt in refresh_token_file."""
    put_refresh_token_file(d, rt)
    return rfc_account(t, d, iss, grant="refresh_token",
                       refresh=fast_refresh(lifetime_margin,
                                            max_backoff=max_backoff),
                       extra={"refresh_token_file": "rt.token"})


def put_refresh_token_file(d, rt):
    write_file(os.path.join(d.accounts_dir, "rt.token"), rt + "\n", 0o600)


def reload_and_wait(d):
    n = d.log_text().count("reloaded:")
    d.sighup()
    d.wait_for(lambda: d.log_text().count("reloaded:") > n, 10, "the reload")


# -- item 5: error_description ---------------------------------------------

def test_error_description_in_last_error(t):
    """A refused password shows the endpoint's own words in the last error
    (`HTTP 400 invalid_grant: bad username or password`); an injected
    description is cut to 200 bytes with its control characters replaced;
    one that repeats the password sent is dropped whole, and the log never
    holds it (the harness scans the log for every secret)."""
    iss, d = failed_account(t, "pw", "password",
                            users={"alice": "not-what-tokend-sends-1"})
    err = last_error(d, "pw")
    check(err == "HTTP 400 invalid_grant: bad username or password",
          "last error %r" % err)
    res = d.tokenctl("status", "pw")
    check("bad username or password" in res.stdout,
          "tokenctl status does not show the description: %r" % res.stdout)

    long_desc = "line one\nline\ttwo\x1b[31m " + "x" * 400
    iss.faults("/token", [
        {"status": 400, "json": {"error": "invalid_grant",
                                 "error_description": long_desc}},
        {"status": 401, "json": {"error": "invalid_client",
                                 "error_description": "you sent password "
                                 "alice-password-0815, wrong"}}])
    reload_and_wait(d)
    d.wait_for(lambda: "line one" in (last_error(d, "pw") or ""), 10,
               "the injected description in the last error")
    err = last_error(d, "pw")
    want_desc = ("line one?line?two?[31m " + "x" * 400)[:200]
    check(err == "HTTP 400 invalid_grant: " + want_desc,
          "sanitised and capped description: %r" % err)
    reload_and_wait(d)
    d.wait_for(lambda: (last_error(d, "pw") or "").startswith("HTTP 401"),
               10, "the second injected answer")
    err = last_error(d, "pw")
    check(err == "HTTP 401 invalid_client", "a description that repeats the "
          "password is kept: %r" % err)
    check("alice-password-0815" not in d.log_text(), "the password is logged")


# -- item 7a: a refused refresh token leaves the state file ---------------

def test_refused_refresh_token_not_sent_after_restart(t):
    """grant = refresh_token: the endpoint refuses the held refresh token;
    it leaves memory and the state file at once (still 0600), the account
    is failed and says it needs a new refresh token, and a restart sends
    nothing: not the refused token, nor the old one still in
    refresh_token_file."""
    iss = rfc_issuer(t, lifetime=3)
    first = new_refresh_token(t, iss)
    iss.reset_log()
    d = t.daemon()
    d.write_account("rt", refresh_account(t, d, iss, first))
    d.start()
    wait_requests(d, iss, 1, 10, "a refresh with the file's token")
    check(iss.log()[0]["refresh_token_used"] == first, "the first refresh "
          "did not use refresh_token_file's token")
    held = d.wait_for(lambda: state_of(d, "rt").get("refresh_token") not in
                      (None, first) and state_of(d, "rt")["refresh_token"],
                      5, "the rotated refresh token in the state file")
    iss.revoke(all_refresh_tokens=True)
    wait_state(d, "rt", "failed")
    refused = [e for e in iss.log() if e["status"] == 400]
    check(refused and refused[0]["refresh_token_used"] == held,
          "the refused request did not use the held token")
    state = state_of(d, "rt")
    check(state.get("refresh_token") is None, "the refused refresh token is "
          "still in the state file")
    check(os.stat(d.state_path("rt")).st_mode & 0o777 == 0o600,
          "state file mode")
    err = last_error(d, "rt")
    check("refresh_token_file" in err and "invalid_grant" in err,
          "the last error does not say a new refresh token is needed: %r"
          % err)

    d.stop()
    n = len(iss.log())
    d.start()
    wait_state(d, "rt", "failed")
    sent = [e["refresh_token_used"] for e in iss.log()[n:]]
    check(not sent, "the restarted daemon sent %d requests, refresh tokens "
          "%s" % (len(sent), [s == held and "the refused one" or
                              s == first and "the file's old one" or s
                              for s in sent]))
    check("refresh_token_file" in (last_error(d, "rt") or ""),
          "after the restart the account does not say what it needs: %r"
          % last_error(d, "rt"))


def test_refused_refresh_token_with_password_grant(t):
    """grant = password: the refused refresh token leaves the state file;
    when the password is refused too, a restart sends only the password
    grant, never the refused refresh token."""
    iss = rfc_issuer(t, lifetime=3)
    d = t.daemon()
    d.write_account("pw", rfc_account(t, d, iss, grant="password",
                                      refresh=fast_refresh(max_backoff="1h")))
    d.start()
    log = wait_requests(d, iss, 2, 10, "a password grant and a refresh")
    iss.settings(users={"alice": "changed-password-2"})
    iss.revoke(all_refresh_tokens=True)
    wait_state(d, "pw", "failed")
    log = iss.log()
    refused = [e["refresh_token_used"] for e in log
               if e["grant_type"] == "refresh_token" and e["status"] == 400]
    check(refused, "no refresh token was refused: %s" % iss.summary())
    check(state_of(d, "pw").get("refresh_token") is None,
          "the refused refresh token is still in the state file")
    d.stop()
    n = len(iss.log())
    d.start()
    wait_state(d, "pw", "failed")
    after = iss.log()[n:]
    check(after and all(e["grant_type"] == "password" for e in after),
          "after the restart: %s" % [(e["grant_type"], e["status"])
                                     for e in after])


# -- item 7b: refresh_token_file wins when it changes ------------------------

def test_new_refresh_token_file_wins_at_reload(t):
    """An account failed for want of a refresh token: a new token put in
    refresh_token_file is used at the next reload, at once, and the account
    is fresh again; the state file records which file seeded it."""
    iss = rfc_issuer(t, lifetime=3)
    d = t.daemon()
    d.write_account("rt", refresh_account(t, d, iss, new_refresh_token(t, iss)))
    iss.revoke(all_refresh_tokens=True)
    d.start()
    wait_state(d, "rt", "failed")
    fresh = new_refresh_token(t, iss)
    n = len(iss.log())
    put_refresh_token_file(d, fresh)
    reload_and_wait(d)
    wait_state(d, "rt", "fresh")
    after = [e for e in iss.log()[n:] if e["path"] == "/token"]
    check(after[0]["refresh_token_used"] == fresh, "the first request after "
          "the reload did not use the new file's token")
    check(len(state_of(d, "rt").get("refresh_token_seed") or "") == 64,
          "no seed in the state file: %r" % state_of(d, "rt"))


def test_new_refresh_token_file_while_a_refresh_is_out(t):
    """A reload brings a new refresh token while a refresh with the old one
    is still out; the old one is refused: the account goes on with the new
    one at once instead of failing."""
    iss = rfc_issuer(t, lifetime=3)
    d = t.daemon()
    d.write_account("rt", refresh_account(t, d, iss, new_refresh_token(t, iss),
                                          max_backoff="1h"))
    iss.reset_log()
    d.start()
    wait_requests(d, iss, 1, 10, "a first refresh")
    iss.revoke(all_refresh_tokens=True)
    # the next refresh is refused, the refusal sent a byte every 20 ms
    iss.faults("/token", [{"drip": 0.02}])
    n = len(iss.log())
    d.wait_for(lambda: len(iss.log()) > n, 10, "the refresh to go out")
    fresh = new_refresh_token(t, iss)
    put_refresh_token_file(d, fresh)
    reload_and_wait(d)
    check(iss.log()[n]["status"] == 400, "harness: the refresh was not "
          "refused: %s" % iss.summary())
    e = d.wait_for(lambda: [x for x in iss.log()[n + 2:]
                            if x["refresh_token_used"] == fresh], 15,
                   "a refresh with the new file's token")[0]
    check(e["status"] == 200, "the new token was refused")
    wait_state(d, "rt", "fresh")


def restart_until_refresh(d, iss):
    """Start d again; the issuer's log entry of its first refresh."""
    n = len(iss.log())
    d.start()
    return d.wait_for(lambda: [x for x in iss.log()[n:]
                               if x["grant_type"] == "refresh_token"], 10,
                      "a refresh after the restart")[0]


def test_new_refresh_token_file_wins_at_start(t):
    """A restart with a new token in refresh_token_file uses it, not the
    rotated one in the state file; a restart with the file unchanged goes
    on with the state file's token, never the file's spent one."""
    iss = rfc_issuer(t, lifetime=3)
    first = new_refresh_token(t, iss)
    d = t.daemon()
    d.write_account("rt", refresh_account(t, d, iss, first))
    d.start()
    wait_requests(d, iss, 2, 10, "two refreshes")
    d.stop()
    saved = state_of(d, "rt")["refresh_token"]
    check(saved != first, "harness: the token did not rotate")

    # unchanged file: the state file's token goes on
    e = restart_until_refresh(d, iss)
    check(e["refresh_token_used"] == saved, "with the file unchanged, the "
          "restart used %s" % ("the file's spent token" if
                               e["refresh_token_used"] == first else
                               "another token"))
    d.stop()

    # a new file: it wins over the state file's token
    fresh = new_refresh_token(t, iss)
    put_refresh_token_file(d, fresh)
    e = restart_until_refresh(d, iss)
    check(e["refresh_token_used"] == fresh, "the restart did not use the new "
          "refresh_token_file")
    check(e["status"] == 200, "the new token was refused: %s" % e["status"])
    check("newly put in refresh_token_file" in d.log_text(),
          "the log does not say the file's token is used")


# -- item 7c: a reload retries failed accounts --------------------------------

def test_failed_account_retried_at_unchanged_reload(t):
    """An account failed on a wrong client secret (max_backoff 1h, so it
    would wait an hour): the issuer is fixed, the account file is left as
    it is, and a reload retries it at once."""
    iss, d = failed_account(t, "cc", "client_credentials",
                            clients={"rfc-client": "other-secret-31337"})
    iss.settings(clients={"rfc-client": CLIENT[1]})
    n = len(iss.log())
    res = d.tokenctl("reload")
    check(res.returncode == 0, "tokenctl reload: %d %r" % (res.returncode,
                                                          res.stderr))
    wait_state(d, "cc", "fresh")
    check(len(iss.log()) == n + 1, "%d requests after the reload"
          % (len(iss.log()) - n))
    check(read_raw(t.out("rfc.token")) == iss.ok_entries()[-1]
          ["issued_access_token"], "the token file does not hold the token")


# -- item 7d: one daemon per state folder -------------------------------------

def test_second_daemon_on_state_folder_refused(t):
    """A second tokend on the same state_dir exits non-zero at once, naming
    the folder and the first one's pid, and leaves the first one's socket,
    files and state alone; once the first stops, a new one starts."""
    iss = rfc_issuer(t)
    d = t.daemon()
    d.write_account("cc", rfc_account(t, d, iss, grant="client_credentials"))
    d.start()
    wait_state(d, "cc", "fresh")
    token = read_raw(t.out("rfc.token"))
    res = subprocess.run(t.wrapper + [t.tokend, "-c", d.conf],
                         stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=20, env=d.env())
    with open(d.log_path, "a") as log:      # scanned for secrets too
        log.write(res.stdout + res.stderr)
    check(res.returncode != 0, "the second tokend exited %d" % res.returncode)
    check(d.state_dir in res.stderr and str(d.proc.pid) in res.stderr,
          "the refusal does not name the folder and pid %d: %r"
          % (d.proc.pid, res.stderr))
    check(len(iss.log()) == 1, "the second tokend made requests")
    row = status_of(d, "cc")
    check(row and row["state"] == "fresh", "the first tokend's socket: %r"
          % row)
    check(read_raw(t.out("rfc.token")) == token, "the token file changed")
    check(os.stat(os.path.join(d.state_dir, ".lock")).st_mode & 0o777 == 0o600,
          "lock file mode")
    d.stop()
    d.start()
    wait_state(d, "cc", "fresh")


def test_reload_to_a_held_state_folder_refused(t):
    """A reload that moves state_dir to a folder another tokend holds is
    refused (the running configuration stays, tokenctl reload says why);
    one that moves it to a free folder takes that folder's lock, so a
    second tokend there is refused, and lets the old folder go."""
    iss = rfc_issuer(t)
    first = t.daemon()
    first.write_account("cc", rfc_account(t, first, iss,
                                          grant="client_credentials"))
    first.start()
    wait_state(first, "cc", "fresh")
    d = t.daemon()
    d.write_account("cc", rfc_account(t, d, iss, grant="client_credentials",
                                      files=[{"path": t.out("d.token")}]))
    d.start()
    wait_state(d, "cc", "fresh")
    old_state = d.state_dir
    first_state = read_raw(first.state_path("cc"))
    d.write_global({"state_dir": first.state_dir})
    res = d.tokenctl("reload")
    check(res.returncode != 0, "the reload onto a held folder: exit %d"
          % res.returncode)
    check("another tokend (pid %d)" % first.proc.pid in res.stderr,
          "tokenctl reload does not say why: %r" % res.stderr)
    check(read_raw(first.state_path("cc")) == first_state,
          "the first tokend's state file changed")
    check(status_of(d, "cc")["state"] == "fresh", "the running "
          "configuration went")
    free_dir = t.path("free-state")
    d.write_global({"state_dir": free_dir})
    res = d.tokenctl("reload")
    check(res.returncode == 0, "the reload onto a free folder: %d %r"
          % (res.returncode, res.stderr))
    second = subprocess.run(
        t.wrapper + [t.tokend, "-c", d.conf], stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=20, env=d.env())
    with open(d.log_path, "a") as log:      # scanned for secrets too
        log.write(second.stdout + second.stderr)
    check(second.returncode != 0 and free_dir in second.stderr,
          "a second tokend on the new folder: exit %d %r"
          % (second.returncode, second.stderr))
    d.write_global({"state_dir": old_state})
    other = t.daemon()
    other.write_global({"state_dir": old_state})
    other.write_account("cc", rfc_account(t, other, iss,
                                          grant="client_credentials",
                                          files=[{"path": t.out("o.token")}]))
    other.start()
    wait_state(other, "cc", "fresh")


# -- item 8: a removed account's token files go ------------------------------

def test_removed_account_token_files_removed(t):
    """A reload that drops an account removes its token files (every
    [file]) and keeps its state file; the files of the accounts that stay
    are left alone, and so is a path that an account of the new
    configuration writes (an account renamed, its file kept)."""
    iss = rfc_issuer(t)
    d = t.daemon()
    files = {"gone": [{"path": t.out("gone.token")},
                      {"path": t.out("gone.json"), "format": "json"}],
             "stays": [{"path": t.out("stays.token")}],
             "old": [{"path": t.out("renamed.token")}]}
    for name, f in files.items():
        d.write_account(name, rfc_account(t, d, iss, grant="client_credentials",
                                          files=f))
    d.start()
    paths = [f["path"] for fs in files.values() for f in fs]
    d.wait_for(lambda: all(read_raw(p) for p in paths), 10, "every file")
    stays = read_raw(t.out("stays.token"))
    d.remove_account("gone")
    d.remove_account("old")
    d.write_account("new", rfc_account(t, d, iss, grant="client_credentials",
                                       files=files["old"]))
    reload_and_wait(d)
    d.wait_for(lambda: not os.path.exists(t.out("gone.token")) and
               not os.path.exists(t.out("gone.json")), 5,
               "the removed account's files to go")
    check(os.path.exists(d.state_path("gone")), "the state file went too")
    check(read_raw(t.out("stays.token")) == stays, "another account's file "
          "changed")
    d.wait_for(lambda: read_raw(t.out("renamed.token")) ==
               iss.ok_entries()[-1]["issued_access_token"], 5,
               "the renamed account's file, written by it")
    check("removed its token file %s" % t.out("gone.token") in d.log_text(),
          "the removal is not logged")


def test_dropped_file_section_removed(t):
    """A reload that drops one [file] of an account that stays removes
    that file (nobody keeps it fresh any more) and keeps the account's
    other file, and its token."""
    iss = rfc_issuer(t)
    d = t.daemon()
    keep = {"path": t.out("keep.token")}
    drop = {"path": t.out("drop.json"), "format": "json"}
    d.write_account("a", rfc_account(t, d, iss, grant="client_credentials",
                                     files=[keep, drop]))
    d.start()
    d.wait_for(lambda: read_raw(keep["path"]) and read_raw(drop["path"]), 10,
               "both files")
    token = read_raw(keep["path"])
    d.write_account("a", rfc_account(t, d, iss, grant="client_credentials",
                                     files=[keep]))
    reload_and_wait(d)
    d.wait_for(lambda: not os.path.exists(drop["path"]), 5,
               "the dropped [file] to go")
    check(read_raw(keep["path"]) == token, "the kept file changed")
    check(len(iss.ok_entries()) == 1, "the reload asked for a new token")


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Recovery tests for tokend."))
