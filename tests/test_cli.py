"""The usage-ping command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.metrics.files import write_metric
from usage_ping.cli import main


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    write_metric(tmp_path, "issues")
    write_metric(tmp_path, "old", key_path="counts.old_thing", status="removed")
    write_metric(
        tmp_path, "search", key_path="redis_hll_counters.search.i_search_total_monthly",
        time_frame="28d", data_source="redis_hll", instrumentation={"events": ["i_search_total"]},
    )  # fmt: skip
    return tmp_path


def test_validate_reports_ok_with_counts(metrics_dir: Path) -> None:
    """A valid dictionary: exit 0 and how many metrics are active."""
    out = io.StringIO()
    assert main(["metrics", "validate", str(metrics_dir)], out) == 0
    assert out.getvalue() == "OK: 3 metrics (2 active)\n"


def test_validate_fails_with_the_file_and_field(
    metrics_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad file: exit 1, and the error on stderr names the file and the field."""
    bad = write_metric(metrics_dir, "bad", key_path="counts.bad", status="maybe")
    assert main(["metrics", "validate", str(metrics_dir)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "status: 'maybe' is not one of" in err


def test_validate_refuses_missing_or_empty_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path that does not exist, or holds no YAML, fails (a CI typo must not pass)."""
    assert main(["metrics", "validate", str(tmp_path / "nope")]) == 1
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["metrics", "validate", str(tmp_path)]) == 1
    assert "no metric files" in capsys.readouterr().err


def test_list_shows_a_table_of_active_metrics(metrics_dir: Path) -> None:
    """list prints key path, source, time frame, status and category of active metrics."""
    out = io.StringIO()
    assert main(["metrics", "list", str(metrics_dir)], out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["key", "path", "source", "time", "frame", "status", "category"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == ["counts.issues", "database", "all", "active", "optional"]
    assert "counts.old_thing" not in out.getvalue()
    assert len(lines) == 4


def test_list_all_as_json(metrics_dir: Path) -> None:
    """--all includes inactive metrics; --format json gives records."""
    out = io.StringIO()
    assert main(["metrics", "list", "--all", "--format", "json", str(metrics_dir)], out) == 0
    rows = json.loads(out.getvalue())
    assert [r["key_path"] for r in rows] == [
        "counts.issues",
        "counts.old_thing",
        "redis_hll_counters.search.i_search_total_monthly",
    ]
    assert rows[1]["status"] == "removed"


def test_installed_command_runs(metrics_dir: Path) -> None:
    """The usage-ping entry point is installed with the package."""
    command = Path(sys.executable).parent / "usage-ping"
    result = subprocess.run(
        [str(command), "metrics", "validate", str(metrics_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 3 metrics")
