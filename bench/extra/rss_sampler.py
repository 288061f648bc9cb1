#!/usr/bin/env python3
"""Sample the RSS of a process tree (for `bench/extra.sh soak`; stdlib only).

Usage: rss_sampler.py PID OUT_CSV --interval S --duration D [--first F]

Writes `t_s,rss_kb` lines to OUT_CSV: a sample F seconds after the start (default 1), then
every S seconds, and a last one at D - 1 seconds (the end of the load), then exits. RSS is
VmRSS from /proc/<pid>/status summed over PID and its children (all threads share one
VmRSS). SIGTERM stops it early (the lines written so far stay). One process, no children,
so it can be stopped by its PID.
"""
import argparse
import os
import signal
import sys
import time


def tree(pid: int) -> list:
    pids = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                pids += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return pids


def rss_kb(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pid", type=int)
    ap.add_argument("out")
    ap.add_argument("--interval", type=float, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--first", type=float, default=1.0)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    t0 = time.monotonic()
    last = max(a.first, a.duration - 1.0)
    times = []
    t = a.first
    while t < last - 0.5 * min(a.interval, 1.0):
        times.append(t)
        t += a.interval
    times.append(last)
    with open(a.out, "w", buffering=1) as out:
        out.write("t_s,rss_kb\n")
        for t in times:
            delay = t0 + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not os.path.exists(f"/proc/{a.pid}"):
                return 1
            out.write("%.1f,%d\n" % (time.monotonic() - t0, rss_kb(a.pid)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
