#!/usr/bin/env python3
"""Parses a metrics exposition from stdin with Prometheus' own Python client (the
parsers a scraper uses) and prints one JSON object per sample:
{"family", "type", "name", "labels", "value"}. Fails (exit 1, the parser's error on
stderr) on anything the parser refuses.

Usage: metrics_parse.py prometheus|openmetrics   (--check: the parser is installed)
"""
import json
import sys


def main():
    if sys.argv[1:] == ["--check"]:
        import prometheus_client.openmetrics.parser  # noqa: F401
        import prometheus_client.parser  # noqa: F401
        return 0
    fmt = sys.argv[1]
    text = sys.stdin.read()
    if fmt == "openmetrics":
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            print(json.dumps({"family": fam.name, "type": fam.type, "name": s.name,
                              "labels": s.labels, "value": s.value}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
