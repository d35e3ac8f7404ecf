"""The ``usage-ping`` command.

``usage-ping metrics validate DIR...``
    Check every metric definition (for the CI of host applications); exit 1 with the file and
    field of the first problem.
``usage-ping metrics list DIR... [--all] [--format table|json]``
    Key path, data source, time frame, status and data category of each metric.
``usage-ping [--config FILE] payload [--out FILE] [--preview] [--queries|--non-sql] [--format]``
    Build the payload with a progress bar and a summary of failures and the slowest metrics;
    ``--preview`` prints only the document that would be sent; ``--queries`` prints the SQL of
    every database metric (nothing is run); ``--non-sql`` computes everything but SQL (-3).
``usage-ping [--config FILE] status | enable | disable | categories [--set LIST]``
    The instance's uuid and switches; the admin's master switch; the data categories sent.
``usage-ping [--config FILE] submit``
    Build today's payload (once a day at most) into the outbox and send every pending one (for
    cron, systemd timers and Kubernetes CronJobs; guarded by the instance lock).
``usage-ping [--config FILE] export --out FILE``
    Write the payload to a file for an air-gapped upload, exactly as it would be sent.
``usage-ping [--config FILE] schedule``
    The instance's weekly slot, the next run, and a crontab line.
``usage-ping [--config FILE] report``
    The DevOps score from the last delivered payload: per feature, leader, instance, percentage.
``usage-ping serve [--service-config FILE] [--host H] [--port P] [--workers N]``
    Run the central service (uvicorn).
``usage-ping service hash-password``
    Ask for an operator's password twice and print its hash for the service's ``operators:``.

Exit codes: 0 done, 1 bad input or configuration, 2 sending failed (the payload stays in the
outbox for the next run), 3 usage ping is disabled, 4 another process is submitting.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from usage_ping.delivery.schedule import next_run
from usage_ping.delivery.submit import devops_report
from usage_ping.errors import UsagePingError
from usage_ping.events.definitions import definition_files
from usage_ping.instance import UsagePing
from usage_ping.metrics import MetricDictionary
from usage_ping.payload import MetricOutcome, Mode
from usage_ping.payload.serialize import to_json
from usage_ping.state import CATEGORIES

__all__ = ["main"]

SEND_FAILED = 2
"""Exit code when a payload could not be sent (it stays in the outbox)."""
DISABLED = 3
"""Exit code when usage ping is switched off."""
BUSY = 4
"""Exit code when another process of the instance holds the lock."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usage-ping", description="Usage telemetry for self-managed software."
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="configuration file (default: $USAGE_PING_CONFIG, else ./usage-ping.yml if present)",
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

    payload = commands.add_parser("payload", help="build the payload and print it")
    payload.add_argument("--out", type=Path, metavar="FILE", help="write the payload to FILE")
    payload.add_argument(
        "--preview", action="store_true", help="print only what would be sent, no summary"
    )
    modes = payload.add_mutually_exclusive_group()
    modes.add_argument(
        "--queries", action="store_true", help="print the SQL of database metrics; run nothing"
    )
    modes.add_argument(
        "--non-sql", action="store_true", help="compute everything except SQL (which gives -3)"
    )
    payload.add_argument("--format", choices=["json", "yaml"], default="json")

    commands.add_parser("status", help="the instance's uuid, switches and data categories")
    commands.add_parser("enable", help="turn usage ping on (unless locked off in configuration)")
    commands.add_parser("disable", help="turn usage ping off: nothing is built or sent")
    categories = commands.add_parser("categories", help="show or choose the data categories sent")
    categories.add_argument(
        "--set", metavar="LIST", help=f"comma-separated, from: {', '.join(CATEGORIES)}"
    )
    commands.add_parser("submit", help="build today's payload and send what is pending")
    export = commands.add_parser("export", help="write the payload to a file (air-gapped hosts)")
    export.add_argument("--out", type=Path, metavar="FILE", required=True)
    commands.add_parser("schedule", help="this instance's weekly slot and next run")
    commands.add_parser("report", help="the DevOps score from the last delivered payload")
    serve = commands.add_parser("serve", help="run the central service (uvicorn)")
    serve.add_argument(
        "--service-config",
        type=Path,
        metavar="FILE",
        help="the service's YAML configuration (default: built-in defaults)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, each on its own SO_REUSEPORT socket so that the kernel spreads "
        "connections across them (default 1)",
    )
    serve.add_argument("--no-access-log", action="store_true", help="do not log each request")
    from usage_ping.demo.cli import add_demo_actions, add_run_arguments

    demo = commands.add_parser(
        "demo",
        help="the main job end to end on the demo platform (or: demo seed, demo simulate)",
        description="Seed the demo platform, track a week of events, start the central service "
        "in-process, build and send the payload, print the DevOps score, then serve the demo "
        "platform, its admin page and the service's dashboards until Ctrl-C.",
    )
    add_run_arguments(demo)
    add_demo_actions(demo.add_subparsers(dest="demo_action", metavar="ACTION"))
    service = commands.add_parser("service", help="central service administration")
    service_actions = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    service_actions.add_parser("hash-password", help="hash an operator's password")
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


def _metrics(args: argparse.Namespace, stdout: TextIO) -> int:
    dictionary = _load(args.paths)
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


@contextmanager
def _progress(console: Console, total: int, enabled: bool) -> Iterator[Any]:
    """A progress bar on the terminal (nothing when stderr is not one); yields the callback."""
    if not enabled or not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("[bold]metrics"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[failed]} failed"),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("metrics", total=total, failed=0)
        failed = 0

        def advance(outcome: MetricOutcome) -> None:
            nonlocal failed
            failed += outcome.failed
            progress.update(task, advance=1, failed=failed)

        yield advance


def _summary(payload: dict[str, Any], console: Console) -> None:
    meta = payload["meta"]
    entries = meta["metrics"]
    failures = [m for m in entries if "error" in m]
    console.print(
        f"{len(entries)} metrics in {meta['duration_s']:.1f} s: "
        f"{len(entries) - len(failures)} computed, {len(failures)} failed",
    )
    for entry in failures:
        console.print(f"  FAILED {entry['key_path']}: {entry['error']}")
    slowest = sorted(entries, key=lambda m: m["duration_ms"], reverse=True)[:5]
    if slowest:
        console.print("slowest:")
        for entry in slowest:
            console.print(f"  {entry['duration_ms']:>10.1f} ms  {entry['key_path']}")


def _payload(args: argparse.Namespace, ping: UsagePing, stdout: TextIO) -> int:
    mode: Mode = "queries" if args.queries else "non_sql" if args.non_sql else "values"
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    if mode != "queries" and not ping.enabled:
        where = f" (locked off in {ping.settings.source})" if ping.settings.locked_off else ""
        console.print(f"usage-ping: usage ping is disabled{where}: nothing built")
        return DISABLED
    total = len(ping.builder(mode).metrics())
    with _progress(console, total, enabled=mode != "queries") as advance:
        payload = ping.build(mode, on_outcome=advance)
    if payload is None:  # switched off while we were starting
        return DISABLED
    if args.format == "yaml":
        text = yaml.safe_dump(payload, sort_keys=False, allow_unicode=True)
    else:
        text = to_json(payload, indent=2) + "\n"
    if args.out is not None:
        args.out.write_text(text)
        console.print(f"payload written to {args.out}")
    else:
        stdout.write(text)
    if not args.preview and mode != "queries":
        _summary(payload, console)
    return 0


def _admin(args: argparse.Namespace, ping: UsagePing, stdout: TextIO) -> int:
    if args.command == "enable":
        ping.enable()
    elif args.command == "disable":
        ping.disable()
    elif args.command == "categories" and args.set is not None:
        ping.state.set_categories(c.strip() for c in args.set.split(",") if c.strip())
    state = ping.state
    lock = f" (locked off in {ping.settings.source})" if ping.settings.locked_off else ""
    rows = [
        ["uuid", state.uuid],
        ["enabled", f"{'yes' if state.enabled else 'no'}{lock}"],
        ["categories", ", ".join(c for c in CATEGORIES if c in state.categories) or "(none)"],
    ]
    for name, value in rows:
        stdout.write(f"{name:<11} {value}\n")
    return 0


def _delivery(args: argparse.Namespace, ping: UsagePing, stdout: TextIO) -> int:
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    if args.command == "submit":
        result = ping.submit()
        console.print(f"usage-ping: {result.describe()}")
        codes = {"disabled": DISABLED, "busy": BUSY, "failed": SEND_FAILED}
        return codes.get(result.status, 0)
    if args.command == "export":
        row = ping.export(args.out)
        if row is None:
            console.print("usage-ping: usage ping is disabled: nothing exported")
            return DISABLED
        console.print(
            f"payload recorded at {row.recorded_at:%Y-%m-%d %H:%M:%S} UTC written to {args.out} "
            f"({len(row.body):,} bytes); upload it on the central service's upload page"
        )
        return 0
    if args.command == "schedule":
        slot = ping.slot()
        stdout.write(f"slot        {slot.describe()} (from the instance uuid {ping.state.uuid})\n")
        stdout.write(f"next run    {next_run(slot, ping.clock()):%Y-%m-%d %H:%M} UTC\n")
        stdout.write(f"crontab     {slot.cron()} usage-ping submit   # in UTC\n")
        return 0
    return _report(ping, stdout)


def _report(ping: UsagePing, stdout: TextIO) -> int:
    row = ping.outbox.last_sent()
    report = devops_report(row) if row is not None else None
    if row is None or report is None:
        stdout.write("no DevOps score yet: no payload has been delivered\n")
        return 0
    score = "n/a" if report.score is None else f"{report.score:.1f} %"
    stdout.write(
        f"DevOps score {score} (payload recorded at {report.recorded_at:%Y-%m-%d %H:%M} UTC, "
        f"usage_data_id {report.usage_data_id})\n\n"
    )
    rows = [["feature", "leader", "instance", "percentage"]]

    def shown(value: float | None, unit: str = "") -> str:
        if value is None:
            return "n/a"
        return f"{value:.1f} %" if unit else f"{value:g}"

    rows += [
        [f, shown(lead), shown(mine), shown(pct, "%")] for f, lead, mine, pct in report.features
    ]
    _table(rows, stdout)
    return 0


def _hash_password(stdout: TextIO, ask: Any = None) -> int:
    import getpass

    from usage_ping.collector.auth import hash_password

    ask = ask or getpass.getpass
    password = ask("operator password: ")
    if len(password) < 12:
        print("usage-ping: error: use at least 12 characters", file=sys.stderr)
        return 1
    if ask("again: ") != password:
        print("usage-ping: error: the two passwords differ", file=sys.stderr)
        return 1
    stdout.write(hash_password(password) + "\n")
    print("add it under operators: in the service configuration, e.g.", file=sys.stderr)
    print("  operators: {alice: <the hash above>}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

    from usage_ping.collector.app import SERVICE_CONFIG_ENV
    from usage_ping.collector.settings import ServiceSettings
    from usage_ping.collector.workers import WorkerOptions, serve

    if args.service_config is not None:
        ServiceSettings.load(
            args.service_config
        )  # fail here, with the file and key, not in a worker
        os.environ[SERVICE_CONFIG_ENV] = str(args.service_config.resolve())
    try:
        serve(
            WorkerOptions(
                "usage_ping.collector.app:app_from_env",
                host=args.host,
                port=args.port,
                access_log=not args.no_access_log,
            ),
            args.workers,
        )
    except OSError as exc:
        print(f"usage-ping serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace, stdout: TextIO) -> int:
    if getattr(args, "demo_action", None):  # demo seed | demo simulate
        from usage_ping.demo.cli import run as run_action

        return run_action(args, stdout)
    from usage_ping.demo.run import run as run_demo  # the web stack: imported only here

    return run_demo(args, stdout if stdout is not sys.stdout else None)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit code."""
    stdout = out or sys.stdout
    args = _parser().parse_args(argv)
    standalone = {
        "metrics": lambda: _metrics(args, stdout),
        "serve": lambda: _serve(args),
        "service": lambda: _hash_password(stdout),
        "demo": lambda: _demo(args, stdout),
    }
    try:
        if args.command in standalone:
            return standalone[args.command]()
        ping = UsagePing.from_config(args.config)
        if args.command == "payload":
            return _payload(args, ping, stdout)
        if args.command in ("submit", "export", "schedule", "report"):
            return _delivery(args, ping, stdout)
        return _admin(args, ping, stdout)
    except (UsagePingError, ValueError) as exc:
        print(f"usage-ping: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
