#!/usr/bin/env python3
"""Summarise a bench/peers.sh results directory as markdown tables (stdlib only).

Usage: report.py RESULTS_DIR
Reads runs.csv, rss_idle.csv, rss_after.csv; prints medians over repetitions.
"""
import csv
import os
import statistics as st
import sys
from collections import defaultdict


def med(xs):
    xs = [float(x) for x in xs if x not in ("", None)]
    return st.median(xs) if xs else None


def f_rps(x):
    return "-" if x is None else f"{x:,.0f}"


def f_ms(us):
    return "-" if us is None else f"{us / 1000:.2f}"


def f_pct(x):
    return "-" if x is None else f"{x:.0f}"


def f_mb(kb):
    return "-" if kb is None else f"{kb / 1024:.1f}"


def main():
    d = sys.argv[1]
    runs = list(csv.DictReader(open(os.path.join(d, "runs.csv"))))
    idle = {r["config"]: r for r in csv.DictReader(open(os.path.join(d, "rss_idle.csv")))} \
        if os.path.exists(os.path.join(d, "rss_idle.csv")) else {}
    after = {r["config"]: r for r in csv.DictReader(open(os.path.join(d, "rss_after.csv")))} \
        if os.path.exists(os.path.join(d, "rss_after.csv")) else {}

    groups = defaultdict(list)
    order = []
    for r in runs:
        k = (r["phase"], r["mode"], r["config"], r["token"], r["conns"])
        if k not in groups:
            order.append(k)
        groups[k].append(r)

    def agg(rows):
        rps = [float(r["rps"]) for r in rows]
        return {
            "n": len(rows),
            "rps": med(rps), "min": min(rps), "max": max(rps),
            "spread": (max(rps) - min(rps)) / st.median(rps) * 100 if rps else None,
            "p50": med(r["p50_us"] for r in rows), "p99": med(r["p99_us"] for r in rows),
            "p999": med(r["p999_us"] for r in rows),
            "proxy": med(r["proxy_cpu_pct"] for r in rows), "backend": med(r["backend_cpu_pct"] for r in rows),
            "wrk": med(r["wrk_cpu_pct"] for r in rows), "busy": med(r["sys_busy_pct"] for r in rows),
            "foreign": max(float(r["foreign_cpu_pct"]) for r in rows),
            "steal": max(float(r["steal_pct"]) for r in rows),
            "err": sum(int(r["sock_errors"]) for r in rows), "non2xx": sum(int(r["non2xx"]) for r in rows),
            "req": sum(int(r["requests"]) for r in rows),
            "peak": med(r["rss_peak_kb"] for r in rows),
            # CPU time the peer spends per request (direct: the backend is the peer)
            "us_req": med((float(r["proxy_cpu_pct"] or r["backend_cpu_pct"]) / 100.0) * 1e6 / float(r["rps"])
                          for r in rows if float(r["rps"]) > 0),
            "be_us_req": med((float(r["backend_cpu_pct"]) / 100.0) * 1e6 / float(r["rps"])
                             for r in rows if float(r["rps"]) > 0),
        }

    A = {k: agg(v) for k, v in groups.items()}
    configs = list(idle)  # rss_idle.csv follows the CONFIGS order
    for k in order:
        if k[2] not in configs:
            configs.append(k[2])
    order.sort(key=lambda k: (["main", "neg", "highc"].index(k[0]) if k[0] in ("main", "neg", "highc") else 9,
                              configs.index(k[2])))

    modes = []
    for k in order:
        if k[0] == "main" and k[1] not in modes:
            modes.append(k[1])

    out = []
    # headline: one row per config
    def get(phase, mode, cfg, kind=None):
        for k in order:
            if k[0] == phase and (mode is None or k[1] == mode) and k[2] == cfg and (kind is None or k[3].endswith(kind)):
                return A[k]
        return None
    hk = [k for k in order if k[0] == "highc"]
    hc = hk[0][4] if hk else "-"
    hdr = "| config |"
    sep = "|---|"
    for m in modes:
        hdr += f" req/s {m} | ×direct | p50 ms | p99 ms | CPU µs/req |"
        sep += "---:|---:|---:|---:|---:|"
    hdr += f" RSS idle MB | RSS @c={hc} MB | 401 req/s (bad sig) |"
    sep += "---:|---:|---:|"
    out.append("### Headline (medians; peer CPU µs/req = CPU time of the proxy process tree per request, direct: the backend's)\n")
    out.append(hdr)
    out.append(sep)
    for c in configs:
        row = f"| {c} |"
        for m in modes:
            a, dref = get("main", m, c), get("main", m, "direct")
            if a:
                ratio = f"{a['rps'] / dref['rps']:.2f}" if dref else "-"
                row += f" {f_rps(a['rps'])} | {ratio} | {f_ms(a['p50'])} | {f_ms(a['p99'])} | {a['us_req']:.1f} |"
            else:
                row += " - | - | - | - | - |"
        i = idle.get(c)
        h = get("highc", None, c)
        n = get("neg", None, c, "badsig")
        row += f" {f_mb(float(i['rss_idle_kb'])) if i else '-'} | {f_mb(h['peak']) if h else '-'} | {f_rps(n['rps']) if n else '-'} |"
        out.append(row)

    for mode in modes:
        keys = [k for k in order if k[0] == "main" and k[1] == mode]
        direct = next((A[k]["rps"] for k in keys if k[2] == "direct"), None)
        nginx = next((A[k]["rps"] for k in keys if k[2] == "nginx"), None)
        n = A[keys[0]]["n"] if keys else 0
        out.append(f"\n### Valid tokens, {mode}, c={keys[0][4] if keys else '?'} (median of {n} interleaved runs)\n")
        out.append("| config | req/s | min–max req/s (spread) | ×direct | ×nginx | p50 ms | p99 ms | p99.9 ms | peer CPU µs/req | CPU% proxy / backend / wrk (machine, of 200) | max foreign / steal CPU% | errors/non-2xx |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k in keys:
            a = A[k]
            rd = f"{a['rps'] / direct:.2f}" if direct else "-"
            rn = f"{a['rps'] / nginx:.2f}" if nginx else "-"
            out.append(f"| {k[2]} | {f_rps(a['rps'])} | {f_rps(a['min'])}–{f_rps(a['max'])} ({a['spread']:.0f}%) | {rd} | {rn} "
                       f"| {f_ms(a['p50'])} | {f_ms(a['p99'])} | {f_ms(a['p999'])} | {a['us_req']:.1f} "
                       f"| {f_pct(a['proxy'])} / {f_pct(a['backend'])} / {f_pct(a['wrk'])} ({f_pct(a['busy'])}) "
                       f"| {f_pct(a['foreign'])} / {f_pct(a['steal'])} | {a['err']}/{a['non2xx']} |")

    negk = [k for k in order if k[0] == "neg"]
    if negk:
        out.append(f"\n### Negative path ({negk[0][1]}, c={negk[0][4]}): every response must be 401\n")
        out.append("| config | token | req/s | ×same config valid | p50 ms | p99 ms | peer CPU µs/req | CPU% proxy / wrk | non-2xx / requests |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for k in negk:
            a = A[k]
            vk = next((x for x in order if x[0] == "main" and x[1] == k[1] and x[2] == k[2]), None)
            rv = f"{a['rps'] / A[vk]['rps']:.2f}" if vk else "-"
            out.append(f"| {k[2]} | {k[3]} | {f_rps(a['rps'])} | {rv} | {f_ms(a['p50'])} | {f_ms(a['p99'])} | {a['us_req']:.1f} "
                       f"| {f_pct(a['proxy'])} / {f_pct(a['wrk'])} | {a['non2xx']:,} / {a['req']:,} |")

    # ours against the peers, same run, same mode
    gws = [c for c in configs if c.startswith("gateway-")]
    if gws:
        for mode in modes:
            def rps(c):
                a = get("main", mode, c)
                return a["rps"] if a else None
            def us(c):
                a = get("main", mode, c)
                return a["us_req"] if a else None
            out.append(f"\n### Gateway ratios, {mode} (req/s ratio; CPU µs/req in brackets)\n")
            out.append("| gateway config | req/s | CPU µs/req | p99 ms | ×nginx | ×haproxy-noauth | ×haproxy-hs256 | ×haproxy-rs256 | ×haproxy-es256 | ×gateway-hs256 |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for c in gws:
                a = get("main", mode, c)
                if not a:
                    continue
                def r(peer):
                    b = rps(peer)
                    return f"{a['rps'] / b:.2f} ({us(peer):.1f})" if b else "-"
                out.append(f"| {c} | {f_rps(a['rps'])} | {a['us_req']:.1f} | {f_ms(a['p99'])} | {r('nginx')} | {r('haproxy-noauth')} "
                           f"| {r('haproxy-hs256')} | {r('haproxy-rs256')} | {r('haproxy-es256')} | {r('gateway-hs256')} |")
        negs = {k[2]: A[k] for k in order if k[0] == "neg"}
        if negs:
            out.append("\n### 401 flood (bad signature) ratios\n")
            out.append("| gateway config | 401/s | ×haproxy same alg | CPU µs per rejection |")
            out.append("|---|---:|---:|---:|")
            for c, a in negs.items():
                if not c.startswith("gateway-"):
                    continue
                peer = negs.get("haproxy-" + c.split("-")[1])
                ratio = f"{a['rps'] / peer['rps']:.2f}" if peer else "-"
                out.append(f"| {c} | {f_rps(a['rps'])} | {ratio} | {a['us_req']:.1f} |")

    out.append("\n### Memory (RSS of the peer's process tree; direct = the backend nginx itself)\n")
    out.append(f"| config | RSS idle MB | PSS idle MB | RSS peak @c={hc} MB | RSS after load MB | req/s @c={hc} | p50 ms | p99 ms | socket errors |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in configs:
        k = next((x for x in hk if x[2] == c), None)
        a = A[k] if k else {}
        i = idle.get(c, {})
        ri = float(i["rss_idle_kb"]) if i else None
        pi = float(i["pss_idle_kb"]) if i else None
        ra = float(after[c]["rss_after_kb"]) if c in after else None
        out.append(f"| {c} | {f_mb(ri)} | {f_mb(pi)} | {f_mb(a.get('peak'))} | {f_mb(ra)} | {f_rps(a.get('rps'))} "
                   f"| {f_ms(a.get('p50'))} | {f_ms(a.get('p99'))} | {a.get('err', '-')} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
