"""Enrichment without HTTP: field mapping, timestamps, fingerprints, addresses, agents, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.collector.snowplow.conftest import event
from usage_ping.collector.settings import SnowplowSettings
from usage_ping.collector.snowplow.enrich import (
    Enricher,
    GoodEvent,
    RequestContext,
    anonymise_ip,
    fingerprint,
)
from usage_ping.collector.snowplow.iglu import Resolver
from usage_ping.collector.snowplow.protocol import Failure

COLLECTED = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
MS = int(COLLECTED.timestamp() * 1000)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher(Resolver(), SnowplowSettings())


def context(**overrides: object) -> RequestContext:
    fields: dict[str, object] = {
        "collector_tstamp": COLLECTED,
        "api_version": "tp2",
        "ip": "198.51.100.7",
        "useragent": CHROME,
        "referer": None,
        "hostname": "collector.example",
        "network_userid": "nuid-1",
        "headers": (),
        "content_type": "application/json",
    }
    fields.update(overrides)
    return RequestContext(**fields)  # type: ignore[arg-type]


def enriched(enricher: Enricher, **fields: str) -> GoodEvent:
    result = enricher.enrich(event(**fields), context())
    assert isinstance(result, GoodEvent), result
    return result


def errors(enricher: Enricher, **fields: str) -> str:
    result = enricher.enrich(event(**fields), context())
    assert isinstance(result, Failure), result
    return " | ".join(result.errors)


def test_derived_timestamp_corrects_the_device_clock(enricher: Enricher) -> None:
    """dtm < stm: collector time minus the time the event waited on the device."""
    result = enriched(enricher, dtm=str(MS - 50_000_000), stm=str(MS - 50_000_000 + 3_000))
    assert result.derived_tstamp == COLLECTED - timedelta(seconds=3)
    assert result.event["derived_tstamp"] == "2026-11-21T11:59:57.000Z"
    assert result.event["collector_tstamp"] == "2026-11-21T12:00:00.000Z"


def test_derived_timestamp_is_the_true_timestamp_when_sent(enricher: Enricher) -> None:
    """ttm wins over everything."""
    result = enriched(enricher, ttm=str(MS - 86_400_000))
    assert result.derived_tstamp == COLLECTED - timedelta(days=1)


def test_derived_timestamp_is_the_collectors_otherwise(enricher: Enricher) -> None:
    """No stm, or dtm not before stm (the Python tracker's second-resolution stm): collector."""
    no_stm = event()
    del no_stm["stm"]
    result = enricher.enrich(no_stm, context())
    assert isinstance(result, GoodEvent)
    assert result.derived_tstamp == COLLECTED
    assert enriched(enricher, dtm="1700000000500", stm="1700000000000").derived_tstamp == COLLECTED


def test_a_true_timestamp_far_ahead_is_bad(enricher: Enricher) -> None:
    """A ttm more than 60 s ahead of the collector is refused."""
    assert "more than 60 s ahead" in errors(enricher, ttm=str(MS + 61_000))
    enriched(enricher, ttm=str(MS + 59_000))


def test_the_fingerprint_ignores_only_the_sent_time() -> None:
    """A resend (new stm) keeps the fingerprint; any other field changes it."""
    first = fingerprint(event())
    assert fingerprint(event(stm="1800000000000")) == first
    assert fingerprint(event(eid="99999999-9999-4999-8999-999999999999")) != first
    assert fingerprint(event(se_la="x")) != first


@given(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=6))
def test_the_fingerprint_does_not_depend_on_field_order(fields: dict[str, str]) -> None:
    """The fields are sorted before hashing."""
    assert fingerprint(fields) == fingerprint(dict(reversed(list(fields.items()))))


@pytest.mark.parametrize(
    ("address", "octets", "segments", "expected"),
    [
        ("203.0.113.9", 1, 0, "203.0.113.x"),
        ("203.0.113.9", 4, 0, "x.x.x.x"),
        ("203.0.113.9", 0, 2, "203.0.113.9"),
        ("2001:db8::1", 0, 3, "2001:0db8:0000:0000:0000:x:x:x"),
        ("not-an-address", 2, 2, "not-an-address"),
    ],
)
def test_anonymise_ip(address: str, octets: int, segments: int, expected: str) -> None:
    """IPv4 octets and IPv6 segments become x; what is not an address is left alone."""
    assert anonymise_ip(address, octets, segments) == expected


def test_the_user_agent_is_parsed_and_bots_flagged(enricher: Enricher) -> None:
    """Browser and OS families, the ua_parser and spiders_and_robots derived contexts."""
    browser = enriched(enricher)
    assert (browser.event["br_family"], browser.event["os_family"]) == ("Chrome", "Windows")
    assert browser.is_bot is False
    derived = {
        c["schema"].split("/")[1]: c["data"] for c in browser.event["derived_contexts"]["data"]
    }
    assert derived["ua_parser_context"]["useragentVersion"] == "Chrome 120.0.0"
    assert derived["spiders_and_robots"]["spiderOrRobot"] is False
    bot = enriched(enricher, ua=GOOGLEBOT)  # the tracker's ua field wins over the header
    assert bot.is_bot is True
    assert bot.event["useragent"] == GOOGLEBOT
    assert enriched(enricher, ua="python-requests/2.32.3").is_bot is False


def test_the_trackers_ip_and_tnuid_win(enricher: Enricher) -> None:
    """ip and tnuid fields override the collector's address and network user id."""
    result = enriched(enricher, ip="192.0.2.1", tnuid="tracker-nuid")
    assert result.event["user_ipaddress"] == "192.0.2.1"
    assert result.event["network_userid"] == "tracker-nuid"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"e": "zz"}, "Field [e]: [zz] is not a recognised event code"),
        ({"p": "desktop"}, "Field [p]: [desktop] is not a supported tracking platform"),
        ({"eid": "123"}, "Field [eid]: [123] is not a UUID"),
        ({"dtm": "yesterday"}, "Field [dtm]: [yesterday] is not a timestamp in milliseconds"),
        ({"dtm": "99999999999999999"}, "not a timestamp in milliseconds"),
        ({"se_va": "NaN"}, "Field [se_va]: [NaN] is not a number"),
        ({"se_va": "1e999"}, "Field [se_va]: [1e999] is not a number"),
        ({"vid": "1.5"}, "Field [vid]: [1.5] is not an integer"),
        ({"res": "1920*1080"}, "Field [res]: [1920*1080] is not a WIDTHxHEIGHT size"),
        ({"cookie": "yes"}, "Field [cookie]: [yes] is not 1 or 0"),
        ({"url": "http://[::1"}, "Field [url]: [http://[::1] is not a URL"),
        ({"se_ca": "x" * 1001}, "Field [se_category]: longer than 1000 characters"),
        ({"e": "ue"}, "a self-describing event (e=ue) needs one"),
        ({"e": "ue", "ue_pr": '{"schema": "iglu:x/y/jsonschema/1-0-0", "data": {}}'},
         "is not iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"),
        ({"co": '{"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",'
                ' "data": [{"schema": "nope", "data": {}}]}'}, "does not match"),
        ({"co": '{"schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",'
                ' "data": {"id": "x"}}'}, "is not a contexts schema"),
        ({"co": "[NaN]"}, "Field [co]: not JSON"),
    ],
)  # fmt: skip
def test_what_makes_an_event_bad(enricher: Enricher, fields: dict[str, str], error: str) -> None:
    """Each broken field is named in the errors."""
    assert error in errors(enricher, **fields)


def test_every_error_is_reported_at_once(enricher: Enricher) -> None:
    """An event with several problems lists them all."""
    message = errors(enricher, e="zz", p="desktop", vid="x")
    assert message.count("Field [") == 3


def test_missing_required_fields(enricher: Enricher) -> None:
    """tv, p and e are required (as payload_data requires them of POSTed events)."""
    result = enricher.enrich({"e": "pv"}, context())
    assert isinstance(result, Failure)
    assert "Field [tv]: missing" in result.errors[0]
    assert "Field [p]: missing" in result.errors[1]


def test_every_event_code_maps_to_its_event(enricher: Enricher) -> None:
    """se, pv, pp, tr, ti (and the legacy ev, ad) are good, with their schemas."""
    names = {}
    for code in ("se", "ev", "pv", "pp", "tr", "ti", "ad"):
        result = enriched(enricher, e=code)
        names[code] = (result.event_type, result.event["event_name"])
    assert names == {
        "se": ("struct", "event"),
        "ev": ("struct", "event"),
        "pv": ("page_view", "page_view"),
        "pp": ("page_ping", "page_ping"),
        "tr": ("transaction", "transaction"),
        "ti": ("transaction_item", "transaction_item"),
        "ad": ("ad_impression", "ad_impression"),
    }


def test_typed_fields_are_converted(enricher: Enricher) -> None:
    """Numbers, flags, sizes and ids become their types in the enriched event."""
    result = enriched(
        enricher,
        e="tr",
        tr_id="o-1",
        tr_tt="10.50",
        tr_tx="1",
        tr_cu="EUR",
        cookie="1",
        cd="24",
        ds="1000x2000",
        pp_mix="-5",
        eid=event()["eid"].upper(),
    )
    e = result.event
    assert (e["tr_orderid"], e["tr_total"], e["tr_tax"], e["tr_currency"]) == (
        "o-1",
        10.5,
        1.0,
        "EUR",
    )
    assert (e["br_cookies"], e["br_colordepth"], e["doc_width"], e["doc_height"]) == (
        True,
        24,
        1000,
        2000,
    )
    assert e["pp_xoffset_min"] == -5
    assert e["event_id"] == event()["eid"]  # a UUID in its canonical (lower-case) form
