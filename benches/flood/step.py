#!/usr/bin/env python3
"""Reads one SIPp run of benches/flood/uac.xml (its -trace_logs file) and prints one line:

    ok=N refused=N failed=N achieved_cps=X refused_p50_ms=X refused_p99_ms=X retry_after=N pass=1

A step passes as in the shared bench: fewer than 0.1 % of the calls fail (refused counts as
failed here) and calls were set up at 95 % of the offered rate or more.

usage: step.py STEP_DIR CALLS RATE
"""
import glob
import sys


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    d, calls, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    ok_at, refused, without_retry = [], [], 0
    for f in glob.glob(d + "/*_logs.log"):
        for line in open(f, errors="replace"):
            p = line.split()
            if len(p) < 5:
                continue
            t0 = float(p[1]) + float(p[2]) / 1e6
            t1 = float(p[3]) + float(p[4]) / 1e6
            if p[0] == "ok":
                ok_at.append(t1)
            elif p[0] == "refused":
                refused.append((t1 - t0) * 1000.0)
                if len(p) < 6 or not p[5].strip().isdigit():
                    without_retry += 1
    ok = len(ok_at)
    failed = calls - ok - len(refused)
    span = max(ok_at) - min(ok_at) if len(ok_at) > 10 else 0.0
    achieved = (ok - 1) / span if span > 0 else 0.0
    passed = (calls - ok) < calls * 0.001 and achieved >= rate * 0.95
    print("ok=%d refused=%d failed=%d achieved_cps=%.0f refused_p50_ms=%.1f refused_p99_ms=%.1f "
          "refused_without_retry_after=%d pass=%d"
          % (ok, len(refused), failed, achieved, pct(refused, 0.5), pct(refused, 0.99),
             without_retry, 1 if passed else 0))


if __name__ == "__main__":
    main()
