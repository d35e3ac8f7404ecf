"""The persisted instance state: uuid generated once, the master switch, its lock, categories."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tests.conftest import make_engine
from usage_ping.state import CATEGORIES, InstanceState, SwitchLockedError, migrate


def test_uuid_is_generated_once_and_kept(engine: sa.Engine) -> None:
    """The first use makes a v4 uuid; a later state object (a restart) reads the same one."""
    first = InstanceState(engine).uuid
    assert uuid.UUID(first).version == 4
    assert InstanceState(engine).uuid == first
    assert InstanceState(engine, locked_off=True).uuid == first


def test_concurrent_first_uses_agree_on_one_uuid(engine: sa.Engine) -> None:
    """Eight processes' worth of first uses at once (own engines): one row, one uuid."""
    engines = [make_engine(engine.url) for _ in range(8)]
    try:
        with ThreadPoolExecutor(8) as pool:
            found = set(pool.map(lambda e: InstanceState(e).uuid, engines))
    finally:
        for e in engines:
            e.dispose()
    assert len(found) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM usage_ping_settings")).scalar() == 1


def test_the_master_switch_persists(engine: sa.Engine) -> None:
    """On by default; off is remembered by the next state object."""
    state = InstanceState(engine)
    assert state.enabled
    state.set_enabled(False)
    assert not InstanceState(engine).enabled
    InstanceState(engine).set_enabled(True)
    assert state.enabled


def test_locked_off_cannot_be_enabled(engine: sa.Engine) -> None:
    """enabled: false in configuration wins over the row, and enabling it is refused."""
    InstanceState(engine).set_enabled(True)
    locked = InstanceState(engine, locked_off=True)
    assert not locked.enabled
    with pytest.raises(SwitchLockedError, match="locked off in the configuration"):
        locked.set_enabled(True)
    locked.set_enabled(False)  # switching off is always allowed
    assert not InstanceState(engine).enabled


def test_categories_are_chosen_and_checked(engine: sa.Engine) -> None:
    """All categories by default; a choice persists in canonical order; unknown names refused."""
    state = InstanceState(engine)
    assert state.categories == frozenset(CATEGORIES)
    state.set_categories(["optional", "standard"])
    assert InstanceState(engine).categories == {"standard", "optional"}
    with pytest.raises(ValueError, match="unknown data categories secret"):
        state.set_categories(["standard", "secret"])
    assert state.categories == {"standard", "optional"}
    state.set_categories([])
    assert state.categories == frozenset()


def test_migrate_is_idempotent(engine: sa.Engine) -> None:
    """Running the migration again changes nothing."""
    migrate(engine)
    state = InstanceState(engine)
    before = state.uuid
    migrate(engine)
    assert state.uuid == before
