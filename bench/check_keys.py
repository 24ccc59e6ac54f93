#!/usr/bin/env python3
"""CPU time of `tokend --check` on one account file of 1 MiB full of keys.

A reload parses every account file inside the event loop, so the cost of
a big file is a stall of everything. Two files, each just under 1 MiB
(the largest an account file may be):

  unknown   [account] and ~124,000 distinct unknown keys ("k0=", "k1=", ...
            in base 36): every key is an error, the most keys a file can hold
  param     [account] with a token_url and ~90,000 distinct param.NAME keys:
            a valid file

Usage: check_keys.py --tokend build/tokend [--runs 3] [--keys N]
Prints the key count and the median user+system CPU seconds of each run.
"""

import argparse
import os
import resource
import statistics
import subprocess
import tempfile

LIMIT = 1024 * 1024
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n):
    s = ""
    while True:
        n, r = divmod(n, 36)
        s = DIGITS[r] + s
        if n == 0:
            return s


def build(style, most):
    if style == "unknown":
        head, fmt = "[account]\n", "k{}=\n"
    else:
        head = "[account]\ntoken_url = https://issuer.example/token\n"
        fmt = "param.{}=1\n"
    out, size, n = [head], len(head), 0
    while True:
        line = fmt.format(base36(n))
        if size + len(line) > LIMIT or n == most:
            break
        out.append(line)
        size += len(line)
        n += 1
    return "".join(out), n


def cpu_of(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + \
        (after.ru_stime - before.ru_stime)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokend", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keys", type=int, default=-1,
                    help="at most this many keys (default: as many as fit)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "tokend.conf")
        with open(conf, "w") as f:
            f.write("[tokend]\n")
        for style in ("unknown", "param"):
            acc = os.path.join(tmp, style)
            os.mkdir(acc)
            text, n = build(style, args.keys)
            path = os.path.join(acc, "big.conf")
            with open(path, "w") as f:
                f.write(text)
            cmd = [args.tokend, "--check", "-c", conf, "-A", acc]
            runs = [cpu_of(cmd) for _ in range(args.runs)]
            print("%-8s %7d keys, %7d bytes: median %.3f s CPU (runs: %s)" %
                  (style, n, os.path.getsize(path), statistics.median(runs),
                   ", ".join("%.3f" % r for r in runs)))


if __name__ == "__main__":
    main()
