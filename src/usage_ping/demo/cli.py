"""``usage-ping demo seed`` and ``usage-ping demo simulate``.

``usage-ping demo seed --scale N --database-url URL [--seed S]``
    Replace the demo's tables with about N x 10,000 generated rows (a progress bar per stage on a
    terminal), then print rows, seconds and rows per second.
``usage-ping [--config FILE] demo simulate [--days D] [--seed S]``
    Track D days (default 7) of the seeded users' events and counters into the counter store of
    the instance configured in FILE (the main command's ``--config``; see
    :func:`usage_ping.demo.config.write_config`).

Hook it into the main command with :func:`add_demo_parser` (the subcommand runs itself through
``args.run``), or call :func:`demo_main` with the arguments after ``demo``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from usage_ping.demo.seed import SeedProgress, Stage, planned_rows, seed
from usage_ping.errors import UsagePingError

__all__ = ["add_demo_actions", "add_demo_parser", "demo_main", "run"]

DEFAULT_DATABASE_URL = "sqlite:///demo.sqlite3"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``usage-ping demo`` itself (the main job, :mod:`usage_ping.demo.run`)."""
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="default: .demo")
    parser.add_argument("--scale", type=int, default=1, help="seed about scale x 10,000 rows")
    parser.add_argument("--database-url", help="the platform's database (default: SQLite)")
    parser.add_argument("--redis-url", help="the counter store (default: an SQLite file)")
    parser.add_argument("--service-database-url", help="the central service's database")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="the demo platform (8080)")
    parser.add_argument("--service-port", type=int, default=8081, help="central service (8081)")
    parser.add_argument("--reseed", action="store_true", help="seed again over existing data")
    parser.add_argument(
        "--no-serve", action="store_true", help="stop after sending (no web servers left up)"
    )


def add_demo_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` (with ``seed`` and ``simulate``) to a command's subparsers.

    The parsed arguments carry ``run(args, stdout) -> int``: the command that was asked for
    (see :func:`run`).
    """
    demo = commands.add_parser("demo", help="the demo platform: seed its data, simulate events")
    add_demo_actions(demo.add_subparsers(dest="demo_action", required=True, metavar="ACTION"))


def add_demo_actions(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``seed`` and ``simulate`` to an existing ``demo`` command's subparsers."""
    seeding = actions.add_parser("seed", help="replace the demo's tables with generated data")
    seeding.add_argument(
        "--scale",
        type=int,
        default=1,
        help="about SCALE x 10,000 rows (1: ten thousand, 1000: ten million; default 1)",
    )
    seeding.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        metavar="URL",
        help=f"the demo's database (SQLAlchemy URL; default {DEFAULT_DATABASE_URL})",
    )
    seeding.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    seeding.set_defaults(run=_seed)
    simulating = actions.add_parser(
        "simulate", help="track days of the seeded users' events into the counter store"
    )
    simulating.add_argument(
        "--days", type=int, default=7, help="days ending today (default 7; 35 fills 28 days)"
    )
    simulating.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    simulating.set_defaults(run=_simulate)


@contextmanager
def _progress(console: Console, scale: int) -> Iterator[SeedProgress | None]:
    """Bars for rows and indexes on a terminal; nothing otherwise."""
    if not console.is_terminal:
        yield None
        return
    planned = planned_rows(scale)
    columns = (
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[table]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bars:
        rows = bars.add_task("rows", total=sum(planned.values()), table="")
        indexes = bars.add_task("indexes", total=len(planned), table="")

        def advance(stage: Stage, table: str, amount: int) -> None:
            bars.update(rows if stage == "rows" else indexes, advance=amount, table=table)

        yield advance


def _seed(args: argparse.Namespace, stdout: TextIO) -> int:
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    engine = sa.create_engine(args.database_url)
    try:
        with _progress(console, args.scale) as progress:
            report = seed(engine, args.scale, seed=args.seed, progress=progress)
    finally:
        engine.dispose()
    stdout.write(report.describe() + "\n")
    for table, seconds in sorted(report.timings.items(), key=lambda item: -item[1])[:5]:
        rows = report.rows[table]
        rate = rows / seconds if seconds > 0 else 0.0
        stdout.write(f"  {table:<24} {rows:>12,} rows in {seconds:6.1f} s ({rate:,.0f} rows/s)\n")
    return 0


def _simulate(args: argparse.Namespace, stdout: TextIO) -> int:
    from usage_ping.demo.config import demo_counters
    from usage_ping.demo.simulate import simulate_events
    from usage_ping.instance import UsagePing

    ping = UsagePing.from_config(getattr(args, "config", None))
    ping.counters = dict(demo_counters(ping.store))
    report = simulate_events(ping, args.days, seed=args.seed)
    stdout.write(report.describe() + "\n")
    return 0


def demo_main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``usage-ping demo ...`` with the arguments after ``demo``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="usage-ping")
    parser.add_argument("--config", type=Path, metavar="FILE", help="usage-ping.yml of the demo")
    add_demo_parser(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    given = list(sys.argv[1:] if argv is None else argv)
    config = []
    if given[:1] == ["--config"]:  # usage-ping --config FILE demo ... spelled after demo
        config, given = given[:2], given[2:]
    args = parser.parse_args([*config, "demo", *given])
    return run(args, out or sys.stdout)


def run(args: argparse.Namespace, stdout: TextIO) -> int:
    """Run the demo command parsed by :func:`add_demo_parser`; errors print and exit 1."""
    command: Callable[[argparse.Namespace, TextIO], int] = args.run
    try:
        return command(args, stdout)
    except (UsagePingError, ValueError, sa.exc.SQLAlchemyError) as exc:
        print(f"usage-ping: error: {exc}", file=sys.stderr)
        return 1
