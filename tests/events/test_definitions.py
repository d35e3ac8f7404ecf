"""Known events load from YAML, validated; bad files fail loudly naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from usage_ping.events import EventDefinitionError, KnownEvents


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_loads_a_directory_with_defaults(tmp_path: Path) -> None:
    """Every YAML file of a directory; expiry and slot default as the guide says."""
    _write(tmp_path / "search.yml", """
- name: i_search_total
  category: search
  aggregation: weekly
- name: i_search_advanced
  category: search
  redis_slot: search
  aggregation: daily
  expiry: 10
  feature_flag: advanced_search
""")  # fmt: skip
    _write(tmp_path / "empty.yaml", "")
    events = KnownEvents.load(tmp_path)
    assert sorted(events) == ["i_search_advanced", "i_search_total"]
    total, advanced = events["i_search_total"], events["i_search_advanced"]
    assert (total.slot, total.expiry_days) == ("i_search_total", 42)
    assert (advanced.slot, advanced.expiry_days, advanced.feature_flag) == (
        "search",
        10,
        "advanced_search",
    )
    assert _daily_default_expiry(tmp_path) == 29
    assert events.categories() == ["search"]


def _daily_default_expiry(tmp_path: Path) -> int:
    path = _write(tmp_path / "daily.yml", "- {name: o_x, category: c, aggregation: daily}\n")
    return KnownEvents.load(path)["o_x"].expiry_days


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {name: i_x, category: c}\n", "'aggregation' is a required property"),
        (
            "- {name: i_x, category: c, aggregation: hourly}\n",
            "aggregation: 'hourly' is not one of",
        ),
        ("- {name: x_bad, category: c, aggregation: daily}\n", "name: 'x_bad' does not match"),
        (
            "- {name: i_x, category: c, aggregation: daily, colour: red}\n",
            "'colour' was unexpected",
        ),
        ("- {name: i_x, category: c, aggregation: daily, expiry: 0}\n", "expiry: 0 is less than"),
        ("name: i_x\n", "expected a list of events"),
        ("- [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_files_name_the_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake is reported with the file's path and what is wrong."""
    path = _write(tmp_path / "bad.yml", text)
    with pytest.raises(EventDefinitionError, match=r"bad\.yml") as info:
        KnownEvents.load(path)
    assert message in str(info.value)


def test_duplicate_names_are_refused_naming_both_files(tmp_path: Path) -> None:
    """A name declared twice names where it was first defined."""
    _write(tmp_path / "a.yml", "- {name: g_x, category: c, aggregation: weekly}\n")
    _write(tmp_path / "b.yml", "- {name: g_x, category: d, aggregation: daily}\n")
    with pytest.raises(
        EventDefinitionError, match=r"b\.yml: event 'g_x' is already defined in .*a\.yml"
    ):
        KnownEvents.load(tmp_path)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    """A path that does not exist is reported, not ignored."""
    with pytest.raises(EventDefinitionError, match="cannot read"):
        KnownEvents.load(tmp_path / "nope.yml")
