"""The ``usage-ping`` command.

``usage-ping metrics validate DIR...``
    Check every metric definition (for the CI of host applications); exit 1 with the file and
    field of the first problem.
``usage-ping metrics list DIR... [--all] [--format table|json]``
    Key path, data source, time frame, status and data category of each metric.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from usage_ping.errors import UsagePingError
from usage_ping.events.definitions import definition_files
from usage_ping.metrics import MetricDictionary

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usage-ping", description="Usage telemetry for self-managed software."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    metrics = commands.add_parser("metrics", help="work with the metric dictionary")
    actions = metrics.add_subparsers(dest="action", required=True, metavar="ACTION")
    validate = actions.add_parser("validate", help="check metric definition files")
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    listing = actions.add_parser("list", help="list the metrics")
    listing.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    listing.add_argument("--all", action="store_true", help="include metrics that are not active")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    return parser


def _load(paths: Sequence[Path]) -> MetricDictionary:
    for path in paths:
        if not path.exists():
            raise UsagePingError(f"{path}: no such file or directory")
    if not definition_files(paths):
        raise UsagePingError(f"no metric files (*.yml, *.yaml) in {', '.join(map(str, paths))}")
    return MetricDictionary.load(*paths)


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit code."""
    stdout = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        dictionary = _load(args.paths)
    except UsagePingError as exc:
        print(f"usage-ping: error: {exc}", file=sys.stderr)
        return 1
    if args.action == "validate":
        active = len(dictionary.active())
        print(f"OK: {len(dictionary)} metrics ({active} active)", file=stdout)
        return 0
    metrics = sorted(dictionary.values(), key=lambda m: m.key_path)
    if not args.all:
        metrics = [m for m in metrics if m.active]
    if args.format == "json":
        fields = ("key_path", "data_source", "time_frame", "status", "data_category")
        rows = [{f: getattr(m, f) for f in fields} for m in metrics]
        json.dump(rows, stdout, indent=2)
        stdout.write("\n")
        return 0
    header = ["key path", "source", "time frame", "status", "category"]
    body = [[m.key_path, m.data_source, m.time_frame, m.status, m.data_category] for m in metrics]
    _table([header, *body], stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
