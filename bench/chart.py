#!/usr/bin/env python3
"""Draw req/s and CPU µs/req per configuration from a results directory as an SVG
(hand-written SVG, stdlib only).

Usage: chart.py RESULTS_DIR OUT.svg   (medians of the main phase, one panel pair per mode)
"""
import csv
import os
import statistics as st
import sys
from collections import defaultdict
from xml.sax.saxutils import escape


def main() -> int:
    d, out = sys.argv[1], sys.argv[2]
    rows = list(csv.DictReader(open(os.path.join(d, "runs.csv"))))
    rps, us = defaultdict(list), defaultdict(list)
    configs, modes = [], []
    for r in rows:
        if r["phase"] != "main" or float(r["rps"]) <= 0:
            continue
        k = (r["mode"], r["config"])
        if r["config"] not in configs:
            configs.append(r["config"])
        if r["mode"] not in modes:
            modes.append(r["mode"])
        rps[k].append(float(r["rps"]))
        cpu = float(r["proxy_cpu_pct"] or r["backend_cpu_pct"])
        us[k].append(cpu / 100.0 * 1e6 / float(r["rps"]))
    if not configs:
        return 1
    bar_h, gap, left, panel_w = 16, 4, 190, 330
    panel_h = len(configs) * (bar_h + gap) + 40
    width = left + 2 * panel_w + 40
    height = len(modes) * (panel_h + 20) + 40
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14">Auth gateway vs peers: req/s (higher is better) and '
           f'CPU µs per request (lower is better), medians</text>']
    for mi, mode in enumerate(modes):
        y0 = 40 + mi * (panel_h + 20)
        for pi, (title, data, unit) in enumerate((("req/s", rps, ""), ("CPU µs/req", us, ""))):
            x0 = left + pi * (panel_w + 20)
            vals = {c: st.median(data[(mode, c)]) for c in configs if data.get((mode, c))}
            top = max(vals.values()) or 1
            svg.append(f'<text x="{x0}" y="{y0 + 12}" font-weight="bold">{escape(title)} ({mode})</text>')
            for i, c in enumerate(configs):
                y = y0 + 20 + i * (bar_h + gap)
                if pi == 0:
                    svg.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{escape(c)}</text>')
                v = vals.get(c)
                if v is None:
                    continue
                w = (panel_w - 70) * v / top
                color = "#d9534f" if c.startswith("gateway") else ("#888" if c == "direct" else "#5b8db8")
                svg.append(f'<rect x="{x0}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
                label = f"{v:,.0f}" if pi == 0 else f"{v:.1f}"
                svg.append(f'<text x="{x0 + w + 4:.1f}" y="{y + 12}">{label}</text>')
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
