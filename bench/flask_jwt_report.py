"""Summarizes a bench/flask-jwt.sh run: medians per side and the gateway/seed ratios.

    python3 bench/flask_jwt_report.py bench/results/flask-jwt-<timestamp>
"""

import csv
import statistics
import sys
from pathlib import Path


def main():
    results = Path(sys.argv[1])
    rows = list(csv.DictReader(open(results / "runs.csv")))
    sides = {}
    for r in rows:
        n = int(r["requests"])
        hz = int(r["hz"])
        # CPU shares over the whole measured window (wrk's start and end included).
        secs = int(r["wall_ms"]) / 1000
        run = {
            "rps": float(r["rps"]),
            "p50": int(r["p50_us"]) / 1000,
            "p99": int(r["p99_us"]) / 1000,
            "cpu_us": int(r["cpu_ticks"]) / hz * 1e6 / n,
            "gateway_cpu_us": int(r["gateway_cpu_ticks"]) / hz * 1e6 / n,
            "servers_pct": int(r["cpu_ticks"]) / hz / secs * 100,
            "machine_pct": int(r["machine_busy_ticks"]) / hz / secs * 100,
            "errors": int(r["non2xx"]) + int(r["socket_errors"]),
        }
        sides.setdefault(r["side"], []).append(run)

    def med(side, key):
        return statistics.median(run[key] for run in sides[side])

    print((results / "machine.txt").read_text().rstrip())
    print()
    print("| setup | req/s | p50 ms | p99 ms | CPU µs/req (all processes) | of which gateway |"
          " servers' CPU % | machine busy % | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {
        "seed": "seed: Flask-JWT in the app (gunicorn)",
        "gateway": "gateway + Flask example (gunicorn)",
    }
    for side in ("seed", "gateway"):
        runs = sides[side]
        gw = "-" if side == "seed" else "%.0f" % med(side, "gateway_cpu_us")
        print("| %s | %.0f | %.2f | %.2f | %.0f | %s | %.0f | %.0f | %d |" % (
            names[side], med(side, "rps"), med(side, "p50"), med(side, "p99"),
            med(side, "cpu_us"), gw, med(side, "servers_pct"), med(side, "machine_pct"),
            sum(r["errors"] for r in runs)))
    print()
    print("Ratios gateway / seed (medians of %d interleaved runs each):" % len(sides["seed"]))
    print()
    print("| req/s | p99 | CPU per request |")
    print("|---:|---:|---:|")
    print("| %.2f | %.2f | %.2f |" % (
        med("gateway", "rps") / med("seed", "rps"),
        med("gateway", "p99") / med("seed", "p99"),
        med("gateway", "cpu_us") / med("seed", "cpu_us")))
    print()
    per_run = [
        "%s %s" % (side, ", ".join("%.0f" % r["rps"] for r in sides[side]))
        for side in ("seed", "gateway")
    ]
    print("Per run (req/s): " + "; ".join(per_run))


if __name__ == "__main__":
    main()
