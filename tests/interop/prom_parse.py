"""Parses an OpenMetrics exposition from stdin with the official Python client's parser.

Prints one JSON object per sample: {"name", "labels", "value"}. Exits non-zero on input
the parser rejects.
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type})
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
