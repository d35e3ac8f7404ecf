"""Seeding the demo: every table on every database, the same rows for a seed, skew, rhythm."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.demo.conftest import NOW
from usage_ping.demo import DEMO_PASSWORD, models, seed
from usage_ping.demo.seed import planned_rows

HASH = "not-a-real-hash"


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def test_seeds_every_table_on_every_database(engine: sa.Engine) -> None:
    """Scale 1 writes about ten thousand rows, every table as planned, dated in the 90 days."""
    report = seed(engine, 1, now=NOW, password_hash=HASH)
    assert report.rows == planned_rows(1)
    assert 9_000 < report.total_rows < 11_000
    assert report.rows_per_second > 0
    assert "rows/s" in report.describe()
    for name, rows in report.rows.items():
        assert _count(engine, models.metadata.tables[name]) == rows, name
    with engine.connect() as conn:
        first, last = conn.execute(
            sa.select(
                sa.func.min(models.events.c.created_at), sa.func.max(models.events.c.created_at)
            )
        ).one()
        authors = conn.execute(sa.select(sa.func.max(models.issues.c.author_id))).scalar_one()
    assert NOW - timedelta(days=90) <= _utc(first) < _utc(last) < NOW
    assert authors <= report.rows["users"]


def test_new_rows_get_ids_after_the_seeded_ones(engine: sa.Engine) -> None:
    """The host app can insert after seeding: ids continue past the largest seeded id."""
    report = seed(engine, 1, now=NOW, password_hash=HASH)
    with engine.begin() as conn:
        inserted = conn.execute(
            models.groups.insert().values(
                name="New", path="new-group", visibility_level=0, owner_id=1, created_at=NOW
            )
        ).inserted_primary_key
    assert inserted is not None
    assert inserted[0] == report.rows["groups"] + 1


def _rows(engine: sa.Engine, table: sa.Table) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        found = conn.execute(sa.select(table).order_by(table.c.id)).all()
    return [tuple(_utc(v) if isinstance(v, datetime) else v for v in row) for row in found]


def test_a_seed_gives_the_same_rows_on_every_database(engine: sa.Engine, tmp_path: Path) -> None:
    """The same seed, scale and time give the same rows here as in a fresh SQLite database."""
    reference = sa.create_engine(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
    seed(engine, 1, seed=7, now=NOW, password_hash=HASH)
    seed(reference, 1, seed=7, now=NOW, password_hash=HASH)
    try:
        for table in (models.users, models.issues, models.ci_builds, models.licenses):
            assert _rows(engine, table) == _rows(reference, table), table.name
    finally:
        reference.dispose()


@pytest.mark.dialects("sqlite")
def test_another_seed_gives_other_rows(engine: sa.Engine, tmp_path: Path) -> None:
    """A different seed changes who did what."""
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    seed(engine, 1, seed=1, now=NOW, password_hash=HASH)
    seed(other, 1, seed=2, now=NOW, password_hash=HASH)
    try:
        assert _rows(engine, models.issues) != _rows(other, models.issues)
        assert _count(engine, models.issues) == _count(other, models.issues)
    finally:
        other.dispose()


@pytest.mark.dialects("sqlite")
def test_a_few_heavy_users_author_most_rows(engine: sa.Engine) -> None:
    """The top 1 % of users author a big share of the activity, the median user very little."""
    report = seed(engine, 10, now=NOW, password_hash=HASH)
    users = report.rows["users"]
    for table in (models.issues, models.notes, models.events):
        with engine.connect() as conn:
            per_user: Counter[int] = Counter(dict(conn.execute(
                sa.select(table.c.author_id, sa.func.count()).group_by(table.c.author_id)
            ).all()))  # fmt: skip
        total = sum(per_user.values())
        top = sum(n for _, n in per_user.most_common(users // 100))
        assert top / total > 0.2, table.name
        counts = sorted(per_user.get(user, 0) for user in range(1, users + 1))
        assert counts[len(counts) // 2] < total / users, table.name


@pytest.mark.dialects("sqlite")
def test_weekdays_are_busier_than_weekends_and_days_than_nights(engine: sa.Engine) -> None:
    """Activity follows a weekly and a daily rhythm."""
    seed(engine, 5, now=NOW, password_hash=HASH)
    with engine.connect() as conn:
        stamps = [_utc(t) for t in conn.execute(sa.select(models.events.c.created_at)).scalars()]
    weekdays = Counter(t.weekday() for t in stamps)
    hours = Counter(t.hour for t in stamps)
    assert min(weekdays[d] for d in range(5)) > 2 * max(weekdays[5], weekdays[6])
    assert hours[10] > 4 * hours[2]


@pytest.mark.dialects("sqlite")
def test_seeding_again_replaces_the_demo_tables_only(engine: sa.Engine) -> None:
    """A second seed starts over; tables that are not the demo's are left alone."""
    keep = sa.Table("keep_me", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    keep.create(engine)
    seed(engine, 1, now=NOW, password_hash=HASH)
    report = seed(engine, 1, now=NOW, password_hash=HASH)
    assert _count(engine, models.issues) == report.rows["issues"]
    assert sa.inspect(engine).has_table("keep_me")


@pytest.mark.dialects("sqlite")
def test_seeded_users_sign_in_with_the_demo_password(engine: sa.Engine) -> None:
    """Every seeded user's hash checks against DEMO_PASSWORD (root is the admin)."""
    from usage_ping.collector.auth import verify_password

    seed(engine, 1, now=NOW)
    with engine.connect() as conn:
        root = conn.execute(sa.select(models.users).where(models.users.c.id == 1)).one()
    assert root.username == "root"
    assert root.admin
    assert verify_password(DEMO_PASSWORD, root.password_hash)
    assert not verify_password("wrong", root.password_hash)


@pytest.mark.dialects("sqlite")
def test_reports_progress_for_rows_and_indexes(engine: sa.Engine) -> None:
    """The progress callback hears about every row and every table's indexes."""
    seen: Counter[tuple[str, str]] = Counter()

    def progress(stage: str, table: str, amount: int) -> None:
        seen[stage, table] += amount

    report = seed(engine, 1, now=NOW, password_hash=HASH, progress=progress)
    assert {t: seen["rows", t] for t in report.rows} == report.rows
    assert {t for (stage, t) in seen if stage == "indexes"} == set(report.rows)


def test_refuses_a_scale_below_one() -> None:
    """Scale 0 is a mistake, not an empty database."""
    with pytest.raises(ValueError, match="scale must be at least 1"):
        seed(sa.create_engine("sqlite://"), 0, password_hash=HASH)
