"""Benchmark: the Snowplow event collector's ingest rate, and event analytics over 10M events.

1. Ingest. The service runs as in production: ``usage-ping serve --workers 2`` (each worker on
   its own ``SO_REUSEPORT`` socket; uvicorn's own ``--workers`` for comparison) on a loopback
   port (configured through ``$USAGE_PING_SERVICE_CONFIG``;
   the collector is on by default), on the PostgreSQL database ``usage_ping_bench_events``,
   created empty for the run. A load generator in another process posts tp2 batches
   (``payload_data`` 1-0-4) of 10 events as the browser tracker sends them: struct events and
   page views of ~2,000 users with their sessions, each with ``cx`` (base64) holding usage-ping's
   standard context and ``web_page``, a browser user agent, from N concurrent httpx clients.
   Measured per concurrency: events stored as good per second (counted in the database after
   the run, over the load's wall time), request latency p50/p95/p99, and bad events (must be
   0). Target: at least 3,000 good events/s on this 2-core machine, where the service, the load
   generator and PostgreSQL share the two cores.
2. Analytics. The database ``usage_ping_bench_events_10m`` holds 10M events written with
   ``COPY`` (50,000 users, 70 % logged in, ~1M sessions of ~10 events, 35 days ending at the
   generation day; 60 % page views over 40 paths and 40 % struct events over 20 category/action
   pairs, both Zipf-like; 2 % of users are bots), then ``VACUUM ANALYZE``. It is reused while its
   marker matches (``--rebuild`` regenerates it). Timed, median of 5 runs after one warm-up: a
   3-step funnel over the last 28 days per user and per session (target: at most 2 s), the same
   with a 1-day window, volume per day and per hour, and the top events; with ``EXPLAIN
   (ANALYZE, BUFFERS)`` of the funnels on the indexes of migration 0004 ("before") and with
   those of 0005 ("after").

Usage::

    python benchmarks/events.py            # everything, about 10 minutes: results/events.md
    python benchmarks/events.py --quick    # a smoke run (100k events, short loads)
    python benchmarks/events.py --skip-ingest --rebuild
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import sqlalchemy as sa

import usage_ping
from servers import RawClient, Service  # benchmarks/servers.py
from usage_ping.collector.snowplow.analytics import (
    Interval,
    Per,
    Step,
    funnel,
    funnel_query,
    top_events,
    volume,
)
from usage_ping.collector.snowplow.iglu import PAYLOAD_DATA, STANDARD_CONTEXT
from usage_ping.collector.snowplow.protocol import TP2_VENDOR
from usage_ping.collector.storage import migrate

BASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
INGEST_DB = "usage_ping_bench_events"
ANALYTICS_DB = "usage_ping_bench_events_10m"
RESULTS = Path(__file__).resolve().parent / "results" / "events.md"

TARGET_RATE = 3000.0
"""Good events stored per second."""
TARGET_FUNNEL_S = 2.0
"""A 3-step funnel over 28 days of 10M events."""
BATCH = 10
MAX_REQUESTS_PER_S = 700
"""Bodies are made before a load starts, enough for this rate (more: 'ran out of bodies')."""
GENERATOR_VERSION = 1
"""Bump when the generated events change: a database with another marker is regenerated."""

CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0.0.0 Safari/537.36 Edg/129.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.0 Safari/605.1.15",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
]
STRUCT = [
    (category, action)
    for category, actions in (
        ("issues", ("create", "close", "comment", "assign")),
        ("merge_requests", ("create", "approve", "merge", "comment")),
        ("pipelines", ("run", "retry", "cancel")),
        ("search", ("submit", "click_result")),
        ("settings", ("save", "invite_member")),
        ("onboarding", ("start", "step_2", "finish")),
        ("billing", ("upgrade", "checkout")),
    )
    for action in actions
]
"""20 category/action pairs, most frequent first."""
PATHS = [
    "/",
    "/dashboard",
    "/projects",
    "/issues",
    "/merge_requests",
    "/pipelines",
    "/search",
    "/settings",
    "/profile",
    "/groups",
    *(f"/docs/page-{i}" for i in range(20)),
    "/pricing",
    "/signup",
    "/signup/welcome",
    "/billing",
    "/billing/checkout",
    "/help",
    "/explore",
    "/snippets",
    "/todos",
    "/activity",
]
"""40 page paths, most frequent first."""
FUNNELS = {
    "struct": [
        Step.struct("issues", "create"),
        Step.page("/issues"),
        Step.struct("issues", "close"),
    ],
}
"""The funnel timed: 3 steps, a struct event, a page view, a struct event."""
OK = "✓"
MISS = "MISS"

_started_at = time.perf_counter()


def log(message: str) -> None:
    """A progress line on stderr, with the seconds since the start."""
    print(f"[{time.perf_counter() - _started_at:7.1f}s] {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def zipf(n: int, s: float = 1.0) -> np.ndarray:
    weights: np.ndarray = 1.0 / np.arange(1, n + 1) ** s
    shares: np.ndarray = weights / weights.sum()
    return shares


# -- databases ---------------------------------------------------------------------------------


def admin() -> sa.Engine:
    return sa.create_engine(BASE_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def database_url(name: str) -> str:
    return sa.make_url(BASE_URL).set(database=name).render_as_string(hide_password=False)


def recreate(name: str) -> str:
    with admin().connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    return database_url(name)


def exists(name: str) -> bool:
    with admin().connect() as conn:
        found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        return found.first() is not None


def server_facts() -> str:
    with admin().connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar_one()
        settings = [
            f"{name}={conn.exec_driver_sql(f'SHOW {name}').scalar_one()}"
            for name in (
                "shared_buffers",
                "work_mem",
                "effective_cache_size",
                "random_page_cost",
                "jit",
                "max_parallel_workers_per_gather",
                "synchronous_commit",
            )
        ]
    return f"PostgreSQL {version} on 127.0.0.1:5432; " + ", ".join(settings)


# -- the service -------------------------------------------------------------------------------


# -- the load generator (another process) ------------------------------------------------------


def _b64(document: Any) -> str:
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Visitors:
    """Users and their sessions, as browser trackers would report them."""

    def __init__(self, users: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.users = users
        self.duid = [
            str(uuid.UUID(int=int(self.rng.integers(2**63)) << 64 | i)) for i in range(users)
        ]
        self.logged_in = self.rng.random(users) < 0.7
        self.session: dict[int, tuple[str, int, str]] = {}
        self.path_cdf = np.cumsum(zipf(len(PATHS)))
        self.struct_cdf = np.cumsum(zipf(len(STRUCT), 0.8))

    def event(self, now_ms: int) -> tuple[dict[str, str], str]:
        """One event's fields and its user agent."""
        rng = self.rng
        user = int(rng.integers(self.users))
        sid, vid, page_id = self.session.get(user) or (str(uuid.uuid4()), 1, str(uuid.uuid4()))
        if rng.random() < 0.05:  # a new session now and then
            sid, vid = str(uuid.uuid4()), vid + 1
        page_view = rng.random() < 0.6
        if page_view:
            page_id = str(uuid.uuid4())
        self.session[user] = (sid, vid, page_id)
        created = now_ms - int(rng.integers(5, 2000))
        fields = {
            "e": "pv" if page_view else "se",
            "eid": str(uuid.uuid4()),
            "tv": "js-4.1.0",
            "tna": "sp",
            "aid": "gitlab",
            "p": "web",
            "dtm": str(created),
            "stm": str(now_ms),
            "tz": "Europe/Berlin",
            "lang": "en-US",
            "cs": "UTF-8",
            "res": "1920x1080",
            "vp": "1536x864",
            "cd": "24",
            "cookie": "1",
            "duid": self.duid[user],
            "vid": str(vid),
            "sid": sid,
            "cx": _b64(
                {
                    "schema": CONTEXTS,
                    "data": [
                        {"schema": WEB_PAGE, "data": {"id": page_id}},
                        {
                            "schema": STANDARD_CONTEXT,
                            "data": {
                                "environment": "production",
                                "source": "gitlab-javascript",
                                "plan": "premium",
                                "namespace_id": 1000 + user % 500,
                                "project_id": 20000 + user % 3000,
                                "user_id": user if self.logged_in[user] else None,
                                "extra": None,
                            },
                        },
                    ],
                }
            ),
        }
        if self.logged_in[user]:
            fields["uid"] = str(user)
        path = PATHS[min(int(np.searchsorted(self.path_cdf, rng.random())), len(PATHS) - 1)]
        url = f"https://gitlab.example.com{path}"
        if page_view:
            fields["url"] = url
            fields["page"] = f"{path.strip('/') or 'Home'} · GitLab"
            fields["refr"] = "https://gitlab.example.com/dashboard"
        else:
            pick = min(int(np.searchsorted(self.struct_cdf, rng.random())), len(STRUCT) - 1)
            category, action = STRUCT[pick]
            fields.update(se_ca=category, se_ac=action, se_la="button", url=url)
            if rng.random() < 0.3:
                fields["se_va"] = str(int(rng.integers(1, 100)))
        return fields, AGENTS[user % len(AGENTS)]


def bodies(count: int, seed: int) -> list[tuple[bytes, str]]:
    """``count`` tp2 POST bodies of BATCH events, each with its user agent."""
    visitors = Visitors(2000, seed)
    now_ms = int(time.time() * 1000)
    found = []
    for i in range(count):
        events = []
        agent = ""
        for _ in range(BATCH):
            fields, agent = visitors.event(now_ms + i)
            events.append(fields)
        body = json.dumps({"schema": PAYLOAD_DATA, "data": events}, separators=(",", ":"))
        found.append((body.encode(), agent))
    return found


@dataclass
class LoadResult:
    """One load run as the generator saw it."""

    concurrency: int
    seconds: float
    requests: int
    latencies_ms: list[float]
    errors: dict[str, int]
    body_bytes: int
    client_cores: float = 0.0
    """The load generator's own CPU over the load, in cores (it shares the machine)."""

    def quantile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None


async def _drive(
    url: str, concurrency: int, seconds: float, seed: int, client_kind: str = "raw"
) -> LoadResult:
    pool = bodies(int(seconds * MAX_REQUESTS_PER_S) + 200, seed)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    next_body = iter(pool)
    path = "/com.snowplowanalytics.snowplow/tp2"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:
        started = time.perf_counter()
        cpu_started = time.process_time()
        end = started + seconds

        async def worker() -> None:
            raw = RawClient(url) if client_kind == "raw" else None
            while time.perf_counter() < end:
                item = next(next_body, None)
                if item is None:
                    errors["ran out of bodies"] += 1
                    return
                body, agent = item
                headers = {
                    "Content-Type": "application/json; charset=UTF-8",
                    "User-Agent": agent,
                    "Origin": "https://gitlab.example.com",
                }
                begun = time.perf_counter()
                try:
                    if raw is not None:
                        status, _ = await raw.post(path, body, headers)
                    else:
                        status = (
                            await client.post(path, content=body, headers=headers)
                        ).status_code
                    ok = status == 200
                    kind = "" if ok else f"HTTP {status}"
                except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    ok, kind = False, type(exc).__name__
                if ok:
                    latencies.append((time.perf_counter() - begun) * 1000)
                else:
                    errors[kind] += 1
            if raw is not None:
                raw.close()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        client_cores = (time.process_time() - cpu_started) / elapsed
    return LoadResult(
        concurrency, elapsed, len(latencies), latencies, dict(errors), len(pool[0][0]), client_cores
    )


def _load_process(url: str, concurrency: int, options: dict[str, Any], queue: Any) -> None:
    queue.put(asyncio.run(_drive(url, concurrency, **options)))


def generate_load(
    url: str, concurrency: int, seconds: float, seed: int, client: str = "raw"
) -> LoadResult:
    """Post batches from another process for ``seconds`` (bodies are made before the clock);
    ``client``: raw (:class:`servers.RawClient`) or httpx."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_load_process,
        args=(url, concurrency, {"seconds": seconds, "seed": seed, "client_kind": client}, queue),
    )
    process.start()
    result: LoadResult = queue.get(timeout=seconds + 600)
    process.join()
    return result


# -- 1. ingest ---------------------------------------------------------------------------------


@dataclass
class IngestRow:
    server: str
    client: str
    concurrency: int
    load: LoadResult
    good: int
    bad: int
    busy_cores: float
    loadavg: str
    workers_cores: list[float]
    """Each uvicorn worker's CPU during the load, in cores (how the connections spread)."""

    @property
    def rate(self) -> float:
        return self.good / self.load.seconds if self.load.seconds else 0.0


def _busy_seconds() -> float:
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _counts(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        good = conn.exec_driver_sql("SELECT count(*) FROM snowplow_events").scalar_one()
        bad = conn.exec_driver_sql("SELECT count(*) FROM snowplow_bad_events").scalar_one()
    return int(good), int(bad)


def _empty(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE snowplow_events, snowplow_bad_events")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE snowplow_events")


def measure_ingest(args: argparse.Namespace, workdir: Path) -> list[IngestRow]:
    url = recreate(INGEST_DB)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    migrate(engine)
    rows = []
    # usage-ping serve at each concurrency with the lean client; for comparison, httpx as the
    # client, and uvicorn's own --workers (one shared socket), at 8 clients.
    plan = [
        ("usage-ping", "raw", args.concurrency),
        ("usage-ping", "httpx", [8]),
        ("uvicorn", "raw", [8]),
    ]
    for server, client, concurrencies in plan:
        rows += _ingest_with(
            server, concurrencies, args, client=client, url=url, engine=engine, workdir=workdir
        )
    engine.dispose()
    return rows


def _ingest_with(
    server: str,
    concurrencies: Sequence[int],
    args: argparse.Namespace,
    *,
    client: str,
    url: str,
    engine: sa.Engine,
    workdir: Path,
) -> list[IngestRow]:
    rows = []
    with Service({"database_url": url}, 2, workdir, f"service-{server}", server) as service:
        log(f"ingest ({server}): warm-up")
        generate_load(service.url, 8, args.warmup, seed=1)
        for number, concurrency in enumerate(concurrencies, start=2):
            _empty(engine)
            log(
                f"ingest ({server}, {client}): {concurrency} concurrent clients for "
                f"{args.seconds:.0f} s"
            )
            busy, at = _busy_seconds(), time.perf_counter()
            workers = service.workers_cpu()
            load = generate_load(service.url, concurrency, args.seconds, number, client)
            elapsed = time.perf_counter() - at
            cores = (_busy_seconds() - busy) / elapsed
            spent = [
                (after - before) / load.seconds
                for after, before in zip(service.workers_cpu(), workers, strict=False)
            ]
            good, bad = _counts(engine)
            row = IngestRow(
                server, client, concurrency, load, good, bad, cores, load_average(), sorted(spent)
            )
            log(
                f"  {row.rate:,.0f} good events/s ({good:,} stored, {bad} bad, "
                f"{load.requests:,} requests), p50 {load.quantile(50) or 0:.0f} ms, "
                f"p99 {load.quantile(99) or 0:.0f} ms, errors {load.errors or 'none'}"
            )
            rows.append(row)
        errors = service.errors()
        if errors:
            log(f"  server errors: {errors[:5]}")
    return rows


def measure_stages(url: str, batches: int = 300) -> dict[str, float]:
    """CPU microseconds per event of each stage of the collector's work, in this process, on the
    ingest database: parse (the body to events, payload_data validated), enrich (validation of
    the contexts, user agent, fingerprint …), row (the stored row's JSON), save (one INSERT per
    batch and its commit)."""
    from usage_ping.collector.settings import SnowplowSettings
    from usage_ping.collector.snowplow.enrich import GoodEvent, RequestContext
    from usage_ping.collector.snowplow.protocol import events_from_body
    from usage_ping.collector.snowplow.routes import Collector
    from usage_ping.collector.snowplow.tables import good_row

    engine = sa.create_engine(url)
    collector = Collector(SnowplowSettings(), engine)
    spent = dict.fromkeys(("parse", "enrich", "row", "save"), 0.0)
    items = bodies(batches + 50, seed=99)
    for number, (body, agent) in enumerate(items):
        context = RequestContext(
            collector_tstamp=datetime.now(UTC),
            api_version="tp2",
            ip="127.0.0.1",
            useragent=agent,
            referer=None,
            hostname="127.0.0.1",
            network_userid=str(uuid.uuid4()),
            headers=(f"user-agent: {agent}", "content-type: application/json"),
            content_type="application/json",
        )
        a = time.process_time()
        parsed = events_from_body(body, {}, collector.resolver)
        b = time.process_time()
        enriched = [collector.enricher.enrich(e, context) for e in parsed if isinstance(e, dict)]
        c = time.process_time()
        rows = [
            good_row(
                g.event,
                g.raw,
                collector=context.collector_tstamp,
                derived=g.derived_tstamp,
                schema=g.schema,
                contexts=g.contexts,
                is_bot=g.is_bot,
            )
            for g in enriched
            if isinstance(g, GoodEvent)
        ]
        d = time.process_time()
        collector.store.save(rows, [])
        e = time.process_time()
        if number >= 50:  # after a warm-up
            for stage, took in zip(spent, (b - a, c - b, d - c, e - d), strict=True):
                spent[stage] += took
    engine.dispose()
    return {stage: took / (batches * BATCH) * 1e6 for stage, took in spent.items()}


# -- 2. analytics over 10M events --------------------------------------------------------------

COLUMNS = (
    "event_fingerprint", "event_id", "collector_tstamp", "derived_tstamp", "app_id", "platform",
    "event", "event_name", "event_schema", "se_category", "se_action", "page_urlhost",
    "page_urlpath", "user_id", "domain_userid", "domain_sessionid", "network_userid", "is_bot",
    "contexts", "enriched", "raw",
)  # fmt: skip
USERS = 50_000
DAYS = 35
SESSION_EVENTS = 10
_CONTEXTS = json.dumps(
    [WEB_PAGE, STANDARD_CONTEXT, "iglu:com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0"]
)


def marker(rows: int, written: int, anchor: datetime) -> str:
    """What the table holds: ``rows`` asked for, ``written`` (sessions that would run past
    midnight are cut there), up to ``anchor``."""
    return json.dumps(
        {
            "version": GENERATOR_VERSION,
            "rows": rows,
            "written": written,
            "anchor": anchor.isoformat(),
        }
    )


def _ids(prefix: int, numbers: np.ndarray) -> list[str]:
    return [f"{prefix:08x}-0000-4000-8000-{n:012x}" for n in numbers.tolist()]


def _chunk(day: int, rows: int, anchor: datetime, seed: int) -> bytes:
    """One day's events as COPY text, in derived_tstamp order."""
    rng = np.random.default_rng(seed * 1000 + day)
    sessions = max(1, rows // SESSION_EVENTS)
    sizes = rng.geometric(1 / SESSION_EVENTS, sessions)
    sizes = np.minimum(sizes, 200)
    total = int(sizes.sum())
    user_of_session = np.minimum(
        (rng.pareto(1.2, sessions) * USERS / 20).astype(np.int64), USERS - 1
    )
    user_of_session = rng.permutation(USERS)[user_of_session]
    day_start = anchor - timedelta(days=DAYS - day)
    starts = rng.random(sessions) * 86_400
    session_of = np.repeat(np.arange(sessions), sizes)
    gaps = rng.exponential(40.0, total)
    first = np.cumsum(sizes) - sizes
    offsets = np.cumsum(gaps)
    offsets -= np.repeat(offsets[first], sizes)
    seconds = starts[session_of] + offsets
    keep = seconds < 86_400
    seconds, session_of = seconds[keep], session_of[keep]
    order = np.argsort(seconds, kind="stable")
    seconds, session_of = seconds[order], session_of[order]
    n = len(seconds)
    users = user_of_session[session_of]
    is_page = rng.random(n) < 0.6
    paths = rng.choice(len(PATHS), n, p=zipf(len(PATHS)))
    structs = rng.choice(len(STRUCT), n, p=zipf(len(STRUCT), 0.8))
    base = np.datetime64(day_start.replace(tzinfo=None), "us")
    stamps = np.datetime_as_string(base + (seconds * 1e6).astype("timedelta64[us]"), unit="us")
    fingerprints = os.urandom(16 * n).hex()
    event_ids = os.urandom(16 * n).hex()
    session_ids = _ids(day, session_of)
    lines = []
    for i in range(n):
        user = int(users[i])
        stamp = str(stamps[i]).replace("T", " ")
        bot = user % 50 == 0
        logged_in = user % 10 < 7
        eid = event_ids[32 * i : 32 * i + 32]
        eid = f"{eid[:8]}-{eid[8:12]}-{eid[12:16]}-{eid[16:20]}-{eid[20:]}"
        duid = f"d{user:07d}-0000-4000-8000-000000000000"
        if is_page[i]:
            path = PATHS[int(paths[i])]
            kind, name, schema = (
                "page_view",
                "page_view",
                "iglu:com.snowplowanalytics.snowplow/page_view/jsonschema/1-0-0",
            )
            category = action = "\\N"
            host = "gitlab.example.com"
            detail = f'"page_urlpath":"{path}","page_title":"{path} · GitLab"'
        else:
            category, action = STRUCT[int(structs[i])]
            path = host = "\\N"
            kind, name, schema = (
                "struct",
                "event",
                "iglu:com.google.analytics/event/jsonschema/1-0-0",
            )
            detail = f'"se_category":"{category}","se_action":"{action}","se_label":"button"'
        uid = str(user) if logged_in else "\\N"
        enriched = (
            f'{{"app_id":"gitlab","platform":"web","event":"{kind}","event_id":"{eid}",'
            f'"collector_tstamp":"{stamp}","derived_tstamp":"{stamp}",{detail},'
            f'"domain_userid":"{duid}","domain_sessionid":"{session_ids[i]}",'
            f'"br_family":"Chrome","os_family":"Linux","v_tracker":"js-4.1.0"}}'
        )
        raw = (
            f'{{"api":{{"vendor":"{TP2_VENDOR}","version":"tp2"}},"parameters":{{"eid":"{eid}"}}}}'
        )
        row = (
            fingerprints[32 * i : 32 * i + 32], eid, stamp, stamp, "gitlab", "web", kind, name,
            schema, category, action, host, path, uid, duid, session_ids[i],
            f"n{user:07d}-0000-4000-8000-000000000000", "t" if bot else "f", _CONTEXTS,
            enriched, raw,
        )  # fmt: skip
        lines.append("\t".join(row))
    return ("\n".join(lines) + "\n").encode()


def _copy_days(job: tuple[str, list[int], int, datetime, int]) -> int:
    url, days, per_day, anchor, seed = job
    written = 0
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        for day in days:
            with cursor.copy(f"COPY snowplow_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                data = _chunk(day, per_day, anchor, seed)
                copy.write(data)
                written += data.count(b"\n")
    return written


def _indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    return [
        (name, definition)
        for name, definition in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'snowplow_events' "
            "AND indexname <> 'snowplow_events_pkey' ORDER BY indexname"
        )
    ]


@dataclass
class Loaded:
    rows: int
    anchor: datetime
    seconds: float | None
    heap_bytes: int
    index_bytes: int


def build(rows: int, rebuild: bool) -> Loaded:
    """The analytics database: reused when its marker matches, else generated with COPY."""
    anchor = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    url = database_url(ANALYTICS_DB)
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    if exists(ANALYTICS_DB) and not rebuild:
        with psycopg.connect(plain) as conn:
            found = conn.execute(
                "SELECT obj_description('snowplow_events'::regclass, 'pg_class')"
            ).fetchone()
        kept = json.loads(found[0]) if found and found[0] else {}
        if kept.get("version") == GENERATOR_VERSION and kept.get("rows") == rows:
            anchor = datetime.fromisoformat(kept["anchor"])
            written = int(kept.get("written", rows))
            log(f"analytics: reusing {ANALYTICS_DB} ({written:,} events up to {anchor:%Y-%m-%d})")
            return Loaded(written, anchor, None, *_sizes(plain))
    started = time.perf_counter()
    url = recreate(ANALYTICS_DB)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    migrate(engine)
    engine.dispose()
    with psycopg.connect(plain, autocommit=True) as conn:
        indexes = _indexes(conn)
        conn.execute("ALTER TABLE snowplow_events DROP CONSTRAINT uq_snowplow_events_fingerprint")
        for name, _ in indexes:
            if name != "uq_snowplow_events_fingerprint":
                conn.execute(f"DROP INDEX {name}")
    per_day = rows // DAYS
    jobs = [(plain, list(range(w, DAYS, 2)), per_day, anchor, 7) for w in range(2)]
    log(f"analytics: generating {rows:,} events with COPY (2 processes)")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        written = sum(pool.map(_copy_days, jobs))
    log(f"  {written:,} rows copied; indexes and VACUUM ANALYZE")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        for name, definition in indexes:
            if name == "uq_snowplow_events_fingerprint":
                conn.execute(
                    "ALTER TABLE snowplow_events ADD CONSTRAINT uq_snowplow_events_fingerprint "
                    "UNIQUE (event_fingerprint)"
                )
            else:
                conn.execute(definition)
        conn.execute("VACUUM ANALYZE snowplow_events")
        note = marker(rows, written, anchor).replace("'", "''")
        conn.execute(f"COMMENT ON TABLE snowplow_events IS '{note}'")
    return Loaded(written, anchor, time.perf_counter() - started, *_sizes(plain))


def _sizes(plain: str) -> tuple[int, int]:
    with psycopg.connect(plain) as conn:
        row = conn.execute(
            "SELECT pg_table_size('snowplow_events'), pg_indexes_size('snowplow_events')"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@dataclass
class Timing:
    name: str
    seconds: list[float]
    result: str

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(name: str, runs: int, work: Callable[[], str]) -> Timing:
    result = work()  # warm-up
    seconds = []
    for _ in range(runs):
        at = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - at)
    timing = Timing(name, seconds, result)
    log(f"  {name}: median {timing.median:.3f} s ({result})")
    return timing


def time_queries(
    conn: sa.Connection, anchor: datetime, runs: int, *, funnels_only: bool = False
) -> list[Timing]:
    """The analytics queries over the 28 days before ``anchor``, on one connection (inside the
    transaction that picked the indexes)."""
    end = anchor
    start = end - timedelta(days=28)
    steps = FUNNELS["struct"]
    timings = []

    def run_funnel(per: Per, window: timedelta | None) -> Callable[[], str]:
        def work() -> str:
            found = funnel(conn, steps, start, end, per=per, window=window)
            return " → ".join(f"{s.count:,}" for s in found.steps)

        return work

    pers: tuple[Per, ...] = ("user", "session")
    for per in pers:
        timings.append(timed(f"funnel, 3 steps, 28 days, per {per}", runs, run_funnel(per, None)))
    for per in pers:
        timings.append(
            timed(
                f"funnel, 3 steps, 28 days, per {per}, 1-day window",
                runs,
                run_funnel(per, timedelta(days=1)),
            )
        )
    if funnels_only:
        return timings

    def run_volume(interval: Interval) -> Callable[[], str]:
        def work() -> str:
            found = volume(conn, start, end, interval=interval)
            return f"{found.total:,} events in {len(found.buckets)} buckets"

        return work

    timings.append(timed("volume per day, 28 days", runs, run_volume("day")))
    timings.append(timed("volume per hour, 28 days", runs, run_volume("hour")))

    def run_top() -> str:
        found = top_events(conn, start, end, limit=20)
        return f"{len(found.struct)} struct, {len(found.pages)} pages"

    timings.append(timed("top events (20 struct, 20 pages), 28 days", runs, run_top))
    return timings


def explain(conn: sa.Connection, anchor: datetime, per: Per, window: timedelta | None) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the timed funnel."""
    end = anchor
    start = end - timedelta(days=28)
    query = funnel_query("postgresql", FUNNELS["struct"], start, end, per=per, window=window)
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}").scalars().all()
    return "\n".join(plan)


COVERED = ("ix_snowplow_events_derived", "ix_snowplow_events_struct", "ix_snowplow_events_page")
"""The indexes migration 0005 gave INCLUDE columns."""
BEFORE = {
    "bench_0004_derived": "(derived_tstamp)",
    "bench_0004_struct": "(se_category, se_action, derived_tstamp)",
    "bench_0004_page": "(page_urlpath, derived_tstamp)",
}
"""The same indexes as migration 0004 made them, kept beside for the "before" measurements."""


def prepare_indexes(engine: sa.Engine) -> None:
    """Migrate to the latest schema (0005) and add the 0004 indexes beside (once)."""
    migrate(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
        for name, columns in BEFORE.items():
            conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON snowplow_events {columns}")
        conn.exec_driver_sql("ANALYZE snowplow_events")


def with_indexes(
    engine: sa.Engine, dropped: Sequence[str], work: Callable[[sa.Connection], Any]
) -> Any:
    """``work`` in a transaction in which ``dropped`` do not exist (rolled back after: DDL is
    transactional in PostgreSQL, so the indexes come back as they were)."""
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            for name in dropped:
                conn.exec_driver_sql(f"DROP INDEX {name}")
            return work(conn)
        finally:
            transaction.rollback()


# -- the report --------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    aligns = [":---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


@dataclass
class Run:
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    loadavg_start: str = field(default_factory=load_average)
    ingest: list[IngestRow] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    loaded: Loaded | None = None
    before: list[Timing] = field(default_factory=list)
    after: list[Timing] = field(default_factory=list)
    plans: dict[str, str] = field(default_factory=dict)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="each ingest load")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--concurrency", type=lambda t: [int(x) for x in t.split(",")], default=[8, 32]
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before-runs", type=int, default=1, help="runs on 0004's indexes")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-analytics", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.seconds, args.warmup, args.runs = 100_000, 5.0, 2.0, 2
        args.before_runs = 1
        args.concurrency = [8]
        if args.output == RESULTS:
            args.output = Path(tempfile.gettempdir()) / "events-quick.md"
    return args


def measure(args: argparse.Namespace, workdir: Path) -> Run:
    run = Run()
    if not args.skip_ingest:
        run.ingest = measure_ingest(args, workdir)
        log("ingest: CPU per stage, in-process")
        run.stages = measure_stages(database_url(INGEST_DB), 100 if args.quick else 300)
        log("  " + ", ".join(f"{k} {v:.0f} µs" for k, v in run.stages.items()))
    if not args.skip_analytics:
        run.loaded = build(args.rows, args.rebuild)
        anchor = run.loaded.anchor
        engine = sa.create_engine(database_url(ANALYTICS_DB), poolclass=sa.pool.NullPool)
        log("analytics: migrating to the latest schema, 0004's indexes beside")
        prepare_indexes(engine)
        run.loaded.heap_bytes, run.loaded.index_bytes = _sizes(
            database_url(ANALYTICS_DB).replace("postgresql+psycopg://", "postgresql://")
        )

        def after(conn: sa.Connection) -> list[Timing]:
            timings = time_queries(conn, anchor, args.runs)
            for per in ("user", "session"):
                run.plans[f"after (0005): per {per}"] = explain(conn, anchor, per, None)
            run.plans["after (0005): per user, 1-day window"] = explain(
                conn, anchor, "user", timedelta(days=1)
            )
            return timings

        def before(conn: sa.Connection) -> list[Timing]:
            timings = time_queries(conn, anchor, args.before_runs, funnels_only=True)
            for per in ("user", "session"):
                run.plans[f"before (0004): per {per}"] = explain(conn, anchor, per, None)
            return timings

        log("analytics: with migration 0005's covering indexes")
        run.after = with_indexes(engine, list(BEFORE), after)
        log("analytics: with migration 0004's indexes")
        run.before = with_indexes(engine, COVERED, before)
        engine.dispose()
    return run


def report(args: argparse.Namespace, run: Run) -> str:
    out = [
        "# Event collector and analytics benchmark",
        "",
        f"_benchmarks/events.py, {run.started:%Y-%m-%d %H:%M} UTC_"
        + (" (a --quick smoke run)" if args.quick else ""),
        "",
        f"- machine: {os.cpu_count()} cores ({_cpu_model()}, {platform.machine()}); load "
        f"average (1 / 5 / 15 min) at the start {run.loadavg_start}, at the end "
        f"{load_average()}: other work shared the machine whenever the 1-minute figure was "
        "over about 2 while the benchmark was idle",
        f"- {server_facts()}",
        f"- usage_ping {usage_ping.__version__}, uvicorn {metadata.version('uvicorn')} "
        f"(uvloop {metadata.version('uvloop')}, httptools {metadata.version('httptools')}), "
        f"FastAPI {metadata.version('fastapi')}, SQLAlchemy {sa.__version__}, psycopg "
        f"{psycopg.__version__}, httpx {httpx.__version__}, Python {platform.python_version()}",
        "",
    ]
    targets: list[tuple[str, str, bool]] = []
    if run.ingest:
        out += [
            "## 1. Ingest: tp2 POST batches of 10 events, 2 workers, PostgreSQL",
            "",
            table(
                [
                    "server",
                    "client",
                    "clients",
                    "good events/s",
                    "requests/s",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "bad",
                    "errors",
                    "busy cores",
                    "workers' cores",
                    "client cores",
                    "load avg after",
                ],
                [
                    [
                        r.server,
                        r.client,
                        str(r.concurrency),
                        f"{r.rate:,.0f}",
                        f"{r.load.requests / r.load.seconds:,.0f}",
                        _ms(r.load.quantile(50)),
                        _ms(r.load.quantile(95)),
                        _ms(r.load.quantile(99)),
                        f"{r.bad:,}",
                        ", ".join(f"{k}: {v}" for k, v in r.load.errors.items()) or "none",
                        f"{r.busy_cores:.2f}",
                        " + ".join(f"{c:.2f}" for c in r.workers_cores),
                        f"{r.load.client_cores:.2f}",
                        r.loadavg,
                    ]
                    for r in run.ingest
                ],
            ),
            "",
            "- server usage-ping = `usage-ping serve --workers 2`: each worker on its own "
            "SO_REUSEPORT socket, the kernel spreading connections across them; server uvicorn = "
            "`uvicorn usage_ping.collector.app:app_from_env --factory --workers 2`, one socket "
            "shared by the workers, for comparison; both on loopback (uvloop and httptools, "
            f"picked by uvicorn as installed), database {INGEST_DB} created empty, emptied "
            "(TRUNCATE) before each load",
            "- the load generator: another process, N concurrent clients on keep-alive "
            "connections (raw: a minimal HTTP/1.1 client over asyncio streams, "
            "benchmarks/servers.py; httpx: httpx.AsyncClient, which costs the shared machine "
            f"more CPU), for {args.seconds:.0f} s after a {args.warmup:.0f} s "
            f"warm-up; each body a payload_data 1-0-4 of {BATCH} browser-tracker events (60 % "
            "page views, 40 % struct events, each with cx: web_page and the standard context; "
            f"uid for 70 % of 2,000 users, duid, sid, vid, res, vp …), "
            f"{run.ingest[0].load.body_bytes:,} bytes",
            "- good events/s = rows in snowplow_events after the load / the load's wall time; "
            "latency = request sent to answer read, as the generator saw it; busy cores = the "
            "whole machine's busy CPU during the load (service, PostgreSQL, load generator with "
            "its bodies made before the clock starts, and anything else); workers' cores = each "
            "uvicorn worker's CPU over the load's measured time: the kernel hands each "
            "keep-alive connection to one worker, and with a few connections one worker may get "
            "most of them; client cores = the load generator's own CPU over the load",
            "",
        ]
        if run.stages:
            total = sum(run.stages.values())
            out += [
                "CPU per event in the service's own code (measured in-process, outside uvicorn; "
                "PostgreSQL's work not included):",
                "",
                table(
                    ["stage", "µs / event"],
                    [[k, f"{v:.0f}"] for k, v in run.stages.items()] + [["total", f"{total:.0f}"]],
                ),
                "",
            ]
        best = max((r for r in run.ingest if r.server == "usage-ping"), key=lambda r: r.rate)
        targets.append(
            (
                f"≥ {TARGET_RATE:,.0f} good events/s",
                f"{best.rate:,.0f}/s ({best.concurrency} clients)",
                best.rate >= TARGET_RATE,
            )
        )
        bad = sum(r.bad for r in run.ingest)
        targets.append(("no bad event", f"{bad} bad", bad == 0))
        worst = max((r.load.quantile(99) or 0) for r in run.ingest)
        targets.append(("p99 request latency (reported)", f"{worst:,.0f} ms at worst", True))
    if run.loaded is not None:
        loaded = run.loaded
        made = (
            f"generated in {loaded.seconds:.0f} s"
            if loaded.seconds is not None
            else "reused from an earlier run"
        )
        out += [
            f"## 2. Analytics over {loaded.rows:,} events",
            "",
            f"- database {ANALYTICS_DB}: {loaded.rows:,} events over the {DAYS} days before "
            f"{loaded.anchor:%Y-%m-%d} (UTC), written with COPY ({made}); {USERS:,} users (70 % "
            f"with user_id, every one with domain_userid and network_userid; 2 % bots), "
            f"sessions of ~{SESSION_EVENTS} events (geometric) 40 s apart on average, user "
            "activity Pareto-skewed; 60 % page views over 40 paths and 40 % struct events over "
            "20 category/action pairs, both Zipf-like; enriched/raw hold a shortened JSON "
            "(~1 kB a row in all, where a real enriched event is 3-5 kB: the heap is smaller "
            "than it would be, which flatters heap reads, not index-only scans); "
            "VACUUM ANALYZE after the load",
            f"- table {loaded.heap_bytes / 2**30:.1f} GiB, indexes "
            f"{loaded.index_bytes / 2**30:.1f} GiB (0005's and 0004's side by side)",
            "- each query: the analytics function as the API calls it, on one connection; "
            f"median of {args.runs} runs after a warm-up run ({args.before_runs} on 0004's "
            "indexes); 'before' drops 0005's covering indexes inside a transaction (rolled "
            "back), 'after' drops the 0004 copies",
            f"- the funnel: {' → '.join(s.label for s in FUNNELS['struct'])}, over the last 28 "
            "days",
            "",
        ]
        before = {t.name: t for t in run.before}
        rows = []
        for timing in run.after:
            old = before.get(timing.name)
            rows.append(
                [
                    timing.name,
                    f"{old.median:.2f}" if old else "",
                    f"{timing.median:.3f}",
                    f"{min(timing.seconds):.3f} to {max(timing.seconds):.3f}",
                    timing.result,
                ]
            )
        out += [
            table(
                ["query", "0004 s", "0005 s (median)", "0005 min to max", "result"],
                rows,
            ),
            "",
        ]
        for timing in run.after:
            if timing.name.startswith("funnel") and "window" not in timing.name:
                targets.append(
                    (
                        f"{timing.name}: ≤ {TARGET_FUNNEL_S:.0f} s",
                        f"{timing.median:.2f} s",
                        timing.median <= TARGET_FUNNEL_S,
                    )
                )
    out += [
        "## Targets",
        "",
        table(
            ["target", "measured", "result"],
            [[t, m, OK if ok else MISS] for t, m, ok in targets],
            right_from=2,
        ),
        "",
        "targets missed: " + (", ".join(t for t, _, ok in targets if not ok) or "none"),
        "",
    ]
    if run.plans:
        out += ["## Plans (EXPLAIN ANALYZE, BUFFERS)", ""]
        for name, plan in run.plans.items():
            out += [f"### {name}", "", "```", plan, "```", ""]
    return "\n".join(out)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="events-bench-") as tmp:
        run = measure(args, Path(tmp))
    text = report(args, run)
    print(text.split("## Plans")[0])
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
