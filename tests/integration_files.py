#!/usr/bin/env python3
"""Integration tests for tokend's token files and their folders (issue 10,
items 4 and 5).

    TOKEND_TEST_SYSTEM=1 python3 tests/integration_files.py \\
        --tokend build/tokend --tokenctl build/tokenctl [-k SUBSTRING] ...

The harness, its options and its output are those of tests/integration.py.
tokend runs as root, so a user who can change any folder on the way to a
[file] path could make root write the token elsewhere: by swapping a folder
for a symbolic link between tokend's checks and its rename, or by putting a
folder of their own there.  These tests play that user.

Attackers are throwaway users (`useradd -M -N -s /usr/sbin/nologin
tokend-f-XXXX`, removed at the end even when the test fails) running a loop
under setpriv; those tests call require("system") and run only as root with
TOKEND_TEST_SYSTEM=1.  Their folders live under a 0755 folder of their own in
the system temporary folder (the test's own folder is 0700, so no other user
could reach anything in it).  Every test also checks that nothing ever lands
in the decoy folder the attacker points at, and that tokend stays alive.

Python standard library only.
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from integration import (  # noqa: E402  (the harness lives next door)
    check, fast_refresh, main, read_raw, require, rfc_account, rfc_issuer,
    throwaway_user, wait_for)

ATTACK_SECONDS = 45      # the attacker's own deadline, should cleanup fail
OTHER_UID = 4242         # owns folders and links in tests that run no code
OTHER_GID = 4343         # a group tokend is not in


# -- setting up ---------------------------------------------------------------

def public_base(t):
    """A fresh 0755 root-owned folder under the system temporary folder,
    which every user can traverse; removed when the test ends."""
    base = tempfile.mkdtemp(prefix="tokend-files-")
    os.chmod(base, 0o755)
    t.cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
    return base


def mkdirs(*paths, mode=0o755, owner=None):
    for p in paths:
        os.mkdir(p)
        os.chmod(p, mode)
        if owner is not None:
            os.chown(p, *owner)


def files_in(folder):
    """Every name below folder (links included), relative to it."""
    out = []
    for top, dirs, names in os.walk(folder):
        for n in dirs + names:
            out.append(os.path.relpath(os.path.join(top, n), folder))
    return sorted(out)


def start_attacker(t, uid, gid, script, *args):
    """python3 -c script args, as uid:gid with no groups, killed when the
    test ends.  The script gets its deadline in DEADLINE, its arguments
    in sys.argv[1:], and report(line), which prints at most 5 lines a
    second (how often it struck so far)."""
    prologue = ("import os, sys, time\n"
                "DEADLINE = time.monotonic() + %d\n"
                "LAST = [0]\n"
                "def report(line):\n"
                "    if time.monotonic() - LAST[0] >= 0.2:\n"
                "        LAST[0] = time.monotonic()\n"
                "        print(line, flush=True)\n" % ATTACK_SECONDS)
    out = t.path("attacker.out")
    with open(out, "w") as f:
        proc = subprocess.Popen(
            ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid,
             "--clear-groups", sys.executable, "-c", prologue + script]
            + list(args), stdin=subprocess.DEVNULL, stdout=f,
            stderr=subprocess.STDOUT)

    def stop():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    t.cleanups.append(stop)
    return proc, out, stop


def token_account(t, d, iss, paths, files=None):
    """A client_credentials account writing raw token files at paths."""
    entries = files or [{"path": p, "format": "raw", "mode": "0640"}
                        for p in paths]
    # min_interval 0: tokenctl refresh gets a new token at once
    d.write_account("acct", rfc_account(t, d, iss, grant="client_credentials",
                                        refresh=fast_refresh(min_interval="0s"),
                                        files=entries))


def start_writing(t, path):
    """A tokend refreshing a 2-second token into path; (issuer, daemon)
    once the first token is there."""
    iss = rfc_issuer(t, lifetime=2)
    d = t.daemon()
    token_account(t, d, iss, [path])
    d.start()
    d.wait_for(lambda: read_raw(path) in issued(iss), 10, "the first token")
    return iss, d


def issued(iss):
    return {e["issued_access_token"] for e in iss.ok_entries()}


def check_decoy_empty(decoy, when):
    left = files_in(decoy)
    check(not left, "%s: tokend wrote into the decoy folder %s: %s"
          % (when, decoy, left))


def refusals(d, path):
    return [x for x in d.log_text().splitlines()
            if "refusing to write %s:" % path in x]


# -- the tests ----------------------------------------------------------------

SWAP_FOLDER = r"""
# Swap the folder sys.argv[1] for a link to sys.argv[2], and back, as
# fast as it goes: the link stands most of the time.
folder, decoy = sys.argv[1], sys.argv[2]
away = folder + ".away"
swaps = 0
while time.monotonic() < DEADLINE:
    try:
        os.rename(folder, away)
        os.symlink(decoy, folder)
        swaps += 1
        time.sleep(0.003)
        os.unlink(folder)
        os.rename(away, folder)
    except OSError as e:
        print("attacker:", e, flush=True)
        time.sleep(0.01)
    report("swaps %d" % swaps)
    time.sleep(0.0005)
"""


def test_swap_race_in_an_ancestor_the_attacker_owns(t):
    """The real attack: the attacker can write an ancestor of the token's
    folder and swaps that folder for a link to a decoy, over and over,
    while tokend refreshes a 2-second token.  No token may ever land in the
    decoy; tokend refuses (a folder on the way is the attacker's) and says
    so, and keeps running."""
    user = throwaway_user(t)
    uid, gid = user.uid, user.gid
    base = public_base(t)
    a, tok, decoy = (os.path.join(base, x) for x in ("a", "a/tok", "decoy"))
    mkdirs(a, tok, decoy)
    path = os.path.join(tok, "x.token")
    iss, d = start_writing(t, path)

    # a folder above the token's becomes the attacker's (a home folder
    # given away, a chown -R gone wrong)
    os.chown(a, uid, gid)
    before = len(iss.ok_entries())
    proc, out, stop = start_attacker(t, uid, gid, SWAP_FOLDER, tok, decoy)
    wait_for(lambda: proc.poll() is not None or os.path.islink(tok), 5,
             "the attacker's first swap")

    def refreshed():
        check_decoy_empty(decoy, "during the attack")
        return len(iss.ok_entries()) >= before + 8
    d.wait_for(refreshed, 30, "8 refreshes during the attack")
    check(proc.poll() is None, "the attacker stopped early: %s"
          % open(out).read()[-500:])
    stop()
    swaps = [x for x in open(out).read().splitlines() if x.startswith("swaps")]
    check(swaps and int(swaps[-1].split()[1]) > 100,
          "harness: the attacker hardly struck: %s" % swaps[-1:])
    # put the folder back, wherever the killed attacker left it: the link
    # standing, or (killed between its rename and its symlink) no tok at all
    if os.path.islink(tok):
        os.unlink(tok)
    if not os.path.lexists(tok):
        os.rename(tok + ".away", tok)

    check_decoy_empty(decoy, "after the attack")
    d.alive()
    lines = refusals(d, path)
    check(len(lines) >= 3, "tokend did not say it refused to write %s; the "
          "log has: %s" % (path, d.log_text().splitlines()[-10:]))
    # which of the two tokend meets first depends on where the swap is
    # when it writes: the attacker's folder on the way, or the link the
    # attacker put there (a loaded machine may see only the second)
    check(any(("belongs to uid %d" % uid in x and a in x) or
              ("%s is a symbolic link" % tok in x) for x in lines),
          "no refusal names the attacker's folder %s or link %s: %s"
          % (a, tok, lines[:3]))
    check(read_raw(path) in issued(iss), "the token file holds %r"
          % read_raw(path))
    check(not os.path.islink(path) and os.stat(path).st_uid == 0,
          "the token file is not root's own file")


PLANT_LINKS = r"""
# In the sticky folder sys.argv[1]: links named like the token file and
# like temp files, and whenever the folder sys.argv[2] is gone (a cleaner
# removed it), a link to sys.argv[3] under its name.
sticky, folder, decoy = sys.argv[1], sys.argv[2], sys.argv[3]
import random, string
def plant(name, target):
    try:
        os.symlink(target, os.path.join(sticky, name))
        return 1
    except OSError:
        return 0
plant("x.token", os.path.join(decoy, "x.token"))
for _ in range(200):
    plant(".x.token.tokend-" + "".join(random.choice(string.ascii_letters
          + string.digits) for _ in range(6)), os.path.join(decoy, "t"))
print("planted", flush=True)
grabs = tries = 0
while time.monotonic() < DEADLINE:
    grabs += plant(os.path.basename(folder), decoy)
    try:
        # root's file, once tokend has replaced the planted link
        if os.lstat(os.path.join(sticky, "x.token")).st_uid == 0:
            tries += 1
            os.rename(os.path.join(sticky, "x.token"),
                      os.path.join(sticky, "x.moved"))
            print("attacker moved root's x.token", flush=True)
    except OSError:
        pass
    report("grabs %d tries %d" % (grabs, tries))
    time.sleep(0.002)
"""


def test_sticky_folder_links_are_never_followed(t):
    """A root-owned sticky world-writable folder (like /tmp) is allowed.
    The attacker plants links named like the token file and like temp
    files, and when the token's sub-folder is gone (a tmp cleaner), puts a
    link to a decoy in its place.  tokend replaces the planted links,
    refuses to write through the link, writes again once root has taken
    the name back, and never writes into the decoy."""
    user = throwaway_user(t)
    uid, gid = user.uid, user.gid
    base = public_base(t)
    sticky, sub, decoy = (os.path.join(base, x) for x in
                          ("s", "s/tok", "decoy"))
    mkdirs(sticky, mode=0o1777)
    mkdirs(sub, decoy)
    xpath, ypath = os.path.join(sticky, "x.token"), os.path.join(sub, "y.token")
    proc, out, stop = start_attacker(t, uid, gid, PLANT_LINKS, sticky, sub,
                                     decoy)
    wait_for(lambda: "planted" in open(out).read() or proc.poll() is not None,
             10, "the attacker's links")
    check(os.path.islink(xpath), "harness: no link planted at %s" % xpath)

    iss = rfc_issuer(t, lifetime=2)
    d = t.daemon()
    token_account(t, d, iss, [xpath, ypath])

    def both_written():
        check_decoy_empty(decoy, "at start-up")
        return read_raw(ypath) in issued(iss) and not os.path.islink(xpath) \
            and read_raw(xpath) in issued(iss)
    d.start()
    d.wait_for(both_written, 10, "both token files")

    # a cleaner removes the sub-folder; the attacker takes the name
    shutil.rmtree(sub)
    d.wait_for(lambda: os.path.islink(sub), 5, "the attacker's link at %s"
               % sub)

    def refused():
        check_decoy_empty(decoy, "while the link stood")
        return len(refusals(d, ypath)) >= 2
    d.wait_for(refused, 15, "tokend to refuse writing %s through the link"
               % ypath)
    x_before = read_raw(xpath)

    # root takes the name back (the attacker keeps trying)
    def take_back():
        try:
            if os.path.islink(sub):
                os.unlink(sub)
            os.mkdir(sub, 0o755)
        except OSError:
            return False
        return True
    wait_for(take_back, 5, "root to take %s back" % sub)
    seen = len(iss.ok_entries())

    def written_again():
        check_decoy_empty(decoy, "after root took the folder back")
        return len(iss.ok_entries()) > seen and \
            read_raw(ypath) in issued(iss)
    d.wait_for(written_again, 15, "a new token in %s" % ypath)
    check(read_raw(xpath) != x_before or len(iss.ok_entries()) > seen,
          "x.token was not refreshed meanwhile")
    stop()
    text = open(out).read()
    check("attacker moved" not in text, "the attacker moved root's token "
          "file: %s" % text[-300:])
    tries = [x for x in text.splitlines() if x.startswith("grabs")]
    check(tries and int(tries[-1].split()[1]) >= 1 and
          int(tries[-1].split()[3]) > 0,
          "harness: the attacker never struck: %s" % tries[-1:])
    check_decoy_empty(decoy, "at the end")
    for p in (xpath, ypath):
        st = os.lstat(p)
        check(stat.S_ISREG(st.st_mode) and st.st_uid == 0,
              "%s is not root's own file (mode %o uid %d)" % (
                  p, st.st_mode, st.st_uid))
    d.alive()


def test_folder_that_became_a_link_is_refused(t):
    """Deterministic: the token's folder is a link when tokend writes (it
    was a folder when the configuration was read).  The write is refused
    with a log line naming the link, nothing is written through it, and
    once the folder is back the next token lands where it belongs."""
    base = t.out("det")
    real, decoy = os.path.join(base, "real"), os.path.join(base, "decoy")
    os.makedirs(real)
    os.mkdir(decoy)
    path = os.path.join(real, "x.token")
    iss, d = start_writing(t, path)

    os.rename(real, real + ".moved")
    os.symlink(decoy, real)
    def refused():
        check_decoy_empty(decoy, "while the folder was a link")
        return refusals(d, path)
    d.wait_for(refused, 10, "a refusal to write %s" % path)
    line = refusals(d, path)[0]
    check("%s is a symbolic link" % real in line,
          "the refusal does not name the link %s: %s" % (real, line))
    check_decoy_empty(decoy, "while the folder was a link")
    d.alive()

    os.unlink(real)
    os.rename(real + ".moved", real)
    seen = len(iss.ok_entries())
    d.wait_for(lambda: len(iss.ok_entries()) > seen and
               read_raw(path) == iss.ok_entries()[-1]["issued_access_token"],
               10, "the newest token back in %s" % path)
    check_decoy_empty(decoy, "at the end")


def account_raw(t, d, iss, path, extra=""):
    """An account file whose `path =` is on line 9 ([file] on line 7)."""
    return "\n".join([
        "[account]",                                            # 1
        "grant = client_credentials",                           # 2
        "token_url = %s" % iss.url("/token"),                   # 3
        "client_id = rfc-client",                               # 4
        "client_secret_file = %s" % d.write_secret(
            "rfc.secret", "rfc-client-secret-4711"),            # 5
        "ca_file = %s" % t.ca,                                  # 6
        "[file]",                                               # 7
        "format = raw",                                         # 8
        "path = %s" % path,                                     # 9
        "mode = 0640",                                          # 10
        extra, ""])


def test_folders_others_can_change_are_refused(t):
    """A folder on the way that is writable by others (0777, not sticky)
    or by its group, or that belongs to another user, and a link that
    belongs to another user: `tokend --check` and the daemon at start name
    FILE:LINE of the `path =` key and the folder, and nothing is written.
    A root-owned sticky folder (1777, like /tmp) and root's own link (like
    /var/run -> /run) are accepted, and the file goes where the link
    points."""
    base = public_base(t)
    dirs = {x: os.path.join(base, x) for x in
            ("wide", "wide/sub", "grp", "sticky", "real", "theirs")}
    mkdirs(dirs["wide"], mode=0o777)
    mkdirs(dirs["wide/sub"], dirs["real"])
    mkdirs(dirs["grp"], mode=0o775)
    mkdirs(dirs["sticky"], mode=0o1777)
    os.symlink(dirs["real"], os.path.join(base, "alias"))
    bad = {"wide": (os.path.join(dirs["wide"], "x.token"),
                    "folder %s is writable by others (mode 0777)" % dirs["wide"]),
           "below": (os.path.join(dirs["wide/sub"], "x.token"),
                     "folder %s is writable by others" % dirs["wide"]),
           "grp": (os.path.join(dirs["grp"], "x.token"),
                   "folder %s is writable by its group" % dirs["grp"])}
    if os.geteuid() == 0:
        mkdirs(dirs["theirs"], owner=(OTHER_UID, OTHER_GID))
        os.symlink(dirs["real"], os.path.join(base, "theirlink"))
        os.lchown(os.path.join(base, "theirlink"), OTHER_UID, OTHER_GID)
        bad["theirs"] = (os.path.join(dirs["theirs"], "x.token"),
                         "folder %s belongs to uid %d" % (dirs["theirs"],
                                                          OTHER_UID))
        bad["theirlink"] = (os.path.join(base, "theirlink", "x.token"),
                            "%s/theirlink is a symbolic link owned by uid %d"
                            % (base, OTHER_UID))
    good = {"sticky": os.path.join(dirs["sticky"], "x.token"),
            "alias": os.path.join(base, "alias", "y.token")}
    iss = rfc_issuer(t, lifetime=3600)
    d = t.daemon()
    for name, (path, _) in bad.items():
        d.write_account(name, raw=account_raw(t, d, iss, path))
    for name, path in good.items():
        d.write_account(name, raw=account_raw(t, d, iss, path))

    rc, err = d.check_config()
    check(rc == 1, "tokend --check exited %d (want 1):\n%s" % (rc, err))
    for name, (path, words) in bad.items():
        tag = "%s:9: " % d.account_path(name)
        hits = [x for x in err.splitlines() if x.startswith(tag)]
        check(hits and words in hits[0] and path in hits[0],
              "--check did not report %s at %s with '%s':\n%s"
              % (name, tag, words, err))
    for name in good:
        check(d.account_path(name) + ":" not in err,
              "--check reported %s:\n%s" % (name, err))

    d.start()
    d.expected_exit = True
    wait_for(lambda: d.proc.poll() is not None, 10,
             "tokend to refuse to start")
    check(d.proc.returncode != 0, "tokend started with unsafe folders")
    log = d.log_text()
    for name, (path, words) in bad.items():
        check("%s:9: " % d.account_path(name) in log and words in log,
              "the log does not report %s:\n%s" % (name, log[-2000:]))
    written = [p for p, _ in bad.values() if os.path.lexists(p)]
    check(not written, "written despite the refusal: %s" % written)

    for name in bad:
        d.remove_account(name)
    rc, err = d.check_config()
    check(rc == 0, "tokend --check exited %d on the good paths:\n%s"
          % (rc, err))
    d.start()
    wanted = [good["sticky"], os.path.join(dirs["real"], "y.token")]
    d.wait_for(lambda: all(read_raw(p) in issued(iss) for p in wanted), 10,
               "the sticky folder's file and the one through root's link")
    check(not os.path.islink(good["sticky"]), "harness: sticky file is a link")


def test_setgid_folder_does_not_choose_the_group(t):
    """A setgid folder whose group is not tokend's: a 0640 token file gets
    tokend's own group when no group is configured, and the configured
    group when one is, never the folder's; checked with os.stat."""
    require("root")        # a folder of a group tokend is not in
    base = t.out("sgid")
    os.makedirs(base)
    os.chown(base, 0, OTHER_GID)
    os.chmod(base, 0o2755)
    plain, grouped = os.path.join(base, "plain.token"), \
        os.path.join(base, "grouped.token")
    iss = rfc_issuer(t, lifetime=3600)
    d = t.daemon()
    token_account(t, d, iss, None, files=[
        {"path": plain, "format": "raw", "mode": "0640"},
        {"path": grouped, "format": "raw", "mode": "0640", "group": "4444"}])
    d.start()
    d.wait_for(lambda: all(read_raw(p) in issued(iss)
                           for p in (plain, grouped)), 10, "both files")
    st = os.stat(plain)
    check(st.st_gid == os.getegid(), "%s has group %d, the setgid folder's "
          "is %d, tokend's %d" % (plain, st.st_gid, OTHER_GID, os.getegid()))
    check(stat.S_IMODE(st.st_mode) == 0o640, "mode %o" % st.st_mode)
    st = os.stat(grouped)
    check(st.st_gid == 4444, "%s has group %d, configured 4444"
          % (grouped, st.st_gid))
    # the next token keeps it so (a rename over the old file)
    first = read_raw(plain)
    out = d.tokenctl("refresh", "acct")
    check(out.returncode == 0, "tokenctl refresh: %s" % out.stderr)
    d.wait_for(lambda: read_raw(plain) not in (None, first), 10,
               "the refreshed token")
    check(os.stat(plain).st_gid == os.getegid(), "refreshed file's group %d"
          % os.stat(plain).st_gid)
    left = sorted(set(os.listdir(base)) - {"plain.token", "grouped.token"})
    check(not left, "stray files: %s" % left)


TESTS = {name: fn for name, fn in list(globals().items())
         if name.startswith("test_") and callable(fn)}

if __name__ == "__main__":
    sys.exit(main(TESTS, __file__,
                  description="Integration tests for tokend's token files "
                  "and their folders."))
