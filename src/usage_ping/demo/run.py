"""``usage-ping demo``: the whole system on one machine, in one command.

Seeds the demo platform's database, tracks a week of simulated events into the counter store,
starts the central service in-process, builds the payload (with a progress bar), sends it, prints
the DevOps score that comes back, then serves the demo platform, its admin page and the central
service's dashboards until Ctrl-C.

On embedded defaults everything lives in ``--workdir`` (``.demo/``): the platform's SQLite
database, the SQLite counter store and the central service's SQLite database. ``--database-url``,
``--redis-url`` and ``--service-database-url`` run the same on real servers.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from usage_ping import tracking
from usage_ping.collector.app import create_app
from usage_ping.collector.auth import hash_password
from usage_ping.collector.settings import ServiceSettings, SnowplowSettings
from usage_ping.delivery.submit import devops_report, submit
from usage_ping.demo import models
from usage_ping.demo.app import ADMIN_PATH, create_demo_app
from usage_ping.demo.cli import add_run_arguments as add_arguments
from usage_ping.demo.config import demo_counters, feature_flags, write_config
from usage_ping.demo.seed import DEMO_PASSWORD, planned_rows, seed
from usage_ping.demo.simulate import simulate_events
from usage_ping.instance import UsagePing
from usage_ping.payload.builder import MetricOutcome
from usage_ping.payload.serialize import to_json

__all__ = ["DemoRun", "add_arguments", "main", "prepare", "run"]

OPERATOR = "admin"


@dataclass
class DemoRun:
    """What :func:`prepare` set up and sent."""

    ping: UsagePing
    service_url: str
    service_server: uvicorn.Server
    service_thread: threading.Thread
    operator_password: str
    payload_path: Path
    score: float | None

    def stop(self) -> None:
        """Stop the central service and the tracker."""
        tracking.flush(2.0)
        self.service_server.should_exit = True
        self.service_thread.join(timeout=10)


def _serve_in_thread(app: object, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server on {host}:{port} did not start (port taken?)")
        time.sleep(0.02)
    return server, thread


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _seeded(engine: sa.Engine) -> bool:
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.select(sa.func.count()).select_from(models.users)).scalar())
    except sa.exc.DBAPIError:
        return False


def prepare(args: argparse.Namespace, console: Console) -> DemoRun:
    """Everything up to the printed score: config, seed, events, service, build, send."""
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for port in (args.port, args.service_port):
        if not args.no_serve and not _port_free(args.host, port):
            raise SystemExit(f"usage-ping demo: port {port} is taken: pass --port/--service-port")
    service_url = f"http://{args.host}:{args.service_port}"
    config = write_config(
        workdir,
        database_url=args.database_url or f"sqlite:///{workdir / 'demo.sqlite3'}",
        store_url=args.redis_url or f"sqlite:///{workdir / 'demo_counters.sqlite3'}",
        collector_url=service_url,
    )
    console.print(f"[bold]1.[/] configuration: {config}")
    ping = UsagePing.from_config(config)
    ping.counters = dict(demo_counters(ping.store))  # the plain counters its metrics read
    if ping.engine.dialect.name == "sqlite":
        # WAL (kept in the file): the build's batch queries read while the platform and the
        # usage ping state write; with the default journal a write could stall a batch past its
        # one-second limit on a loaded machine.
        with ping.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")

    if args.reseed or not _seeded(ping.engine):
        with Progress(
            TextColumn("[bold]2.[/] seeding {task.fields[table]:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            planned = sum(planned_rows(args.scale).values())
            task = progress.add_task("seed", total=planned, table="")

            def seeded(stage: str, table: str, amount: int) -> None:
                if stage == "rows":
                    progress.update(task, advance=amount, table=table)
                else:
                    progress.update(task, table=f"{stage} {table}")

            seeding = seed(ping.engine, args.scale, progress=seeded)
        console.print(f"[bold]2.[/] seeded {seeding.describe()}")
    else:
        console.print("[bold]2.[/] the database is already seeded (--reseed to start over)")

    if ping.events is not None:  # the demo's feature flags, as stored in its database
        ping.events.flags = feature_flags(ping.engine)
    events = simulate_events(ping, days=7)
    console.print(f"[bold]3.[/] a week of simulated events tracked: {events.describe()}")

    secret = secrets.token_urlsafe(32)
    password = secrets.token_urlsafe(9)
    service_settings = ServiceSettings(
        database_url=args.service_database_url or f"sqlite:///{workdir / 'service.sqlite3'}",
        secret_key=secret,
        operators={OPERATOR: hash_password(password)},
        # The demo's service is a test service: the Snowplow-Micro API shows what arrived.
        snowplow=SnowplowSettings(micro=True),
    )
    service_app = create_app(service_settings)
    server, thread = _serve_in_thread(service_app, args.host, args.service_port)
    console.print(f"[bold]4.[/] central service up at {service_url}")
    tracking.configure(endpoint=service_url, app_id="usage-ping-demo", environment="demo")

    total = len(ping.builder().metrics())
    with Progress(
        TextColumn("[bold]5.[/] building the payload"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[failed]} failed"),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("build", total=total, failed=0)
        failed = 0

        def advance(outcome: MetricOutcome) -> None:
            nonlocal failed
            failed += outcome.failed
            progress.update(task, advance=1, failed=failed)

        payload = ping.build(on_outcome=advance)
    if payload is None:
        raise SystemExit("usage-ping demo: usage ping is disabled in the demo's configuration")
    meta = payload["meta"]
    payload_path = workdir / "payload.json"
    payload_path.write_text(to_json(payload, indent=2) + "\n")
    console.print(
        f"[bold]5.[/] payload of {len(meta['metrics'])} metrics built in "
        f"{meta['duration_s']:.1f} s ({sum('error' in m for m in meta['metrics'])} failed): "
        f"{payload_path}"
    )
    ping.outbox.add(payload)
    result = submit(ping, build=False)
    console.print(f"[bold]6.[/] sent: {result.describe()}")
    row = ping.outbox.last_sent()
    report = devops_report(row) if row is not None else None
    score = report.score if report is not None else None
    if report is not None:
        table = Table(title=f"DevOps score: {score:.1f} %" if score is not None else "DevOps score")
        for column in ("feature", "leader", "instance", "percentage"):
            table.add_column(column, justify="left" if column == "feature" else "right")
        for feature, leader, mine, pct in report.features:
            table.add_row(
                feature,
                "n/a" if leader is None else f"{leader:g}",
                "n/a" if mine is None else f"{mine:.3g}",
                "n/a" if pct is None else f"{pct:.1f} %",
            )
        console.print(table)
    return DemoRun(ping, service_url, server, thread, password, payload_path, score)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """``usage-ping demo [options]``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="usage-ping demo", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv), out)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the demo with parsed options."""
    console = Console(file=out, highlight=False, soft_wrap=True)
    demo = prepare(args, console)
    app_url = f"http://{args.host}:{args.port}"
    try:
        if args.no_serve:
            return 0
        app = create_demo_app(
            demo.ping, secret_key=secrets.token_urlsafe(32), service_url=demo.service_url
        )
        console.print(
            "\n[bold]Up until Ctrl-C:[/]\n"
            f"  demo platform      {app_url}/  (log in as root, password {DEMO_PASSWORD})\n"
            f"  its admin page     {app_url}{ADMIN_PATH}\n"
            f"  central service    {demo.service_url}/dashboard  (operator {OPERATOR}, "
            f"password {demo.operator_password})\n"
            f"  payload file       {demo.payload_path}\n"
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    finally:
        demo.stop()
