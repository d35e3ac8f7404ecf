"""``usage-ping demo seed`` and ``usage-ping demo simulate``."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from usage_ping.demo import models, write_config
from usage_ping.demo.cli import add_demo_parser, demo_main, run


def test_seed_command_seeds_and_reports_the_speed(tmp_path: Path) -> None:
    """``demo seed --scale 1 --database-url URL`` writes the rows and prints rows per second."""
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    out = io.StringIO()
    assert demo_main(["seed", "--scale", "1", "--database-url", url, "--seed", "3"], out) == 0
    assert "rows/s" in out.getvalue()
    engine = sa.create_engine(url)
    try:
        assert sa.inspect(engine).has_table(models.issues.name)
    finally:
        engine.dispose()


def test_simulate_command_tracks_into_the_configured_store(tmp_path: Path) -> None:
    """``--config FILE demo simulate --days 2`` after a seed tracks events."""
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    assert demo_main(["seed", "--database-url", url], io.StringIO()) == 0
    config = write_config(tmp_path, database_url=url)
    out = io.StringIO()
    assert demo_main(["--config", str(config), "simulate", "--days", "2"], out) == 0
    assert out.getvalue().startswith("2 days: ")


def test_hooks_into_another_command_in_one_call(tmp_path: Path) -> None:
    """``add_demo_parser(commands)`` adds ``demo``; ``run(args, out)`` runs what was parsed."""
    parser = argparse.ArgumentParser(prog="usage-ping")
    add_demo_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["demo", "seed", "--database-url", "bogus://nowhere"])
    assert args.command == "demo"
    assert run(args, io.StringIO()) == 1  # a bad URL is an error message, not a traceback


def test_a_bad_scale_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Scale 0 exits 1 with a message."""
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    assert demo_main(["seed", "--scale", "0", "--database-url", url], io.StringIO()) == 1
    assert "scale must be at least 1" in capsys.readouterr().err
