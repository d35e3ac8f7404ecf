"""The usage-ping command line."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.instance_files import make_instance
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


# -- payload and the switches -------------------------------------------------------------------


@pytest.mark.swallows
def test_payload_prints_json_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The payload on stdout; failures and the slowest metrics on stderr."""
    config = make_instance(tmp_path)
    assert main(["--config", str(config), "payload"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["counts"] == {"issues": 30, "broken": -1}
    assert payload["version"] == "3.2.1"
    assert "4 metrics in " in captured.err
    assert "3 computed, 1 failed" in captured.err
    assert "FAILED counts.broken: NoSuchTableError: no_such_table" in captured.err
    assert "slowest:" in captured.err


@pytest.mark.swallows
def test_payload_out_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--out writes the file; --preview prints only the document, without the summary."""
    config = make_instance(tmp_path)
    out = tmp_path / "payload.json"
    assert main(["--config", str(config), "payload", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["counts"]["issues"] == 30
    assert f"payload written to {out}" in capsys.readouterr().err
    assert main(["--config", str(config), "payload", "--preview"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["settings"] == {"answer": 42}
    assert captured.err == ""


def test_payload_queries_as_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--queries --format yaml: the SQL of each database metric, descriptors for the others."""
    config = make_instance(tmp_path)
    assert main(["--config", str(config), "payload", "--queries", "--format", "yaml"]) == 0
    captured = capsys.readouterr()
    payload = yaml.safe_load(captured.out)
    assert payload["counts"]["issues"] == "SELECT count(*) AS count_1 FROM issues"
    assert payload["usage_activity_by_stage"]["plan"]["issue_authors"] == (
        "SELECT count(DISTINCT issues.author_id) AS count_1 FROM issues"
    )
    assert payload["settings"]["answer"] == {
        "callable": "tests.payload.targets:constant",
        "options": {"value": 42},
    }
    assert payload["meta"]["mode"] == "queries"


def test_payload_non_sql(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--non-sql: database metrics give -3, the rest is computed."""
    config = make_instance(tmp_path)
    assert main(["--config", str(config), "payload", "--non-sql", "--preview"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["counts"] == {"issues": -3, "broken": -3}
    assert payload["settings"] == {"answer": 42}


def test_disabled_payload_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Switched off: nothing is printed on stdout, exit 3, and stderr says why."""
    config = make_instance(tmp_path)
    assert main(["--config", str(config), "disable"]) == 0
    assert "enabled     no" in capsys.readouterr().out
    assert main(["--config", str(config), "payload"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage ping is disabled: nothing built" in captured.err


def test_locked_off_cannot_be_enabled_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """enable under enabled: false fails with exit 1 and the reason; status says locked."""
    config = make_instance(tmp_path, extra_config="enabled: false\n")
    assert main(["--config", str(config), "enable"]) == 1
    assert "locked off in the configuration" in capsys.readouterr().err
    assert main(["--config", str(config), "status"]) == 0
    assert f"enabled     no (locked off in {config})" in capsys.readouterr().out
    assert main(["--config", str(config), "payload"]) == 3
    assert f"disabled (locked off in {config})" in capsys.readouterr().err


def test_status_and_categories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status shows the uuid, the switch and the categories; categories --set changes them."""
    config = make_instance(tmp_path)
    assert main(["--config", str(config), "status"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("uuid        ")
    assert "categories  standard, subscription, operational, optional" in first
    assert main(["--config", str(config), "categories", "--set", "optional,standard"]) == 0
    assert "categories  standard, optional" in capsys.readouterr().out
    assert main(["--config", str(config), "categories", "--set", "standard,bogus"]) == 1
    assert "unknown data categories bogus" in capsys.readouterr().err


def test_a_bad_configuration_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in the configuration: exit 1 naming the file and the key."""
    config = tmp_path / "usage-ping.yml"
    config.write_text("concurency: 2\n")
    assert main(["--config", str(config), "payload"]) == 1
    assert "'concurency' was unexpected" in capsys.readouterr().err


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal the build shows a progress bar with the metric count and failures."""
    config = make_instance(tmp_path)
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    done = subprocess.run(
        [sys.executable, "-m", "usage_ping.cli", "--config", str(config), "payload"],
        stdout=subprocess.PIPE, stderr=secondary, env=env, timeout=60, check=True,
    )  # fmt: skip
    os.close(secondary)
    screen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    text = screen.decode(errors="replace")
    assert "metrics" in text
    assert "4/4" in text
    assert "1 failed" in text
    assert json.loads(done.stdout)["counts"]["issues"] == 30


def test_service_hash_password(capsys: pytest.CaptureFixture[str]) -> None:
    """The operator's password, asked twice, becomes a verifiable scrypt hash."""
    from usage_ping.cli import _hash_password
    from usage_ping.collector.auth import verify_password

    out = io.StringIO()
    answers = iter(["correct horse battery", "correct horse battery"])
    assert _hash_password(out, ask=lambda _: next(answers)) == 0
    stored = out.getvalue().strip()
    assert stored.startswith("scrypt$")
    assert verify_password("correct horse battery", stored)
    differ = iter(["correct horse battery", "correct horse batterY"])
    assert _hash_password(io.StringIO(), ask=lambda _: next(differ)) == 1
    assert "differ" in capsys.readouterr().err
    assert _hash_password(io.StringIO(), ask=lambda _: "short") == 1
