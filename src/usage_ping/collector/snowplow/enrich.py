"""Enrichment: one raw event (its tracker fields) to an enriched event, or to a failure.

The enriched event has Snowplow's atomic fields (``app_id`` … ``true_tstamp``, the shape Snowplow
Micro shows), filled from the tracker protocol's fields, and these enrichments:

- ``collector_tstamp`` (when the request arrived) and ``etl_tstamp``;
- ``derived_tstamp``, Snowplow's formula: ``true_tstamp`` when the tracker sent one; otherwise,
  when the device's created time is before its sent time, ``collector_tstamp - (dvce_sent_tstamp
  - dvce_created_tstamp)`` (the device clock's offset cancels out); otherwise ``collector_tstamp``;
- the user agent (``ua`` field, else the request's header) parsed into ``br_*``/``os_*`` fields
  and the ``ua_parser_context`` and ``spiders_and_robots`` derived contexts (:mod:`.agents`);
- ``user_ipaddress`` (``ip`` field, else the collector's address), anonymised to the configured
  number of IPv4 octets or IPv6 segments (replaced by ``x``, as Snowplow does);
- ``event_fingerprint``: BLAKE2b-128 of the event's tracker fields, sorted, without ``stm`` (the
  one field a tracker changes when it resends an event). A retried event has the same fingerprint
  and is stored once; two events of one tracker always differ in ``eid`` (and usually ``dtm``).

An event is good when ``e`` is a known event code, ``tv``, ``p`` and ``e`` are present, the typed
fields parse (numbers, timestamps in ms, ``WxH`` sizes, ``1``/``0`` flags, a UUID ``eid``, a known
platform, URLs), every Iglu JSON validates (the ``ue`` and ``contexts`` envelopes, the event's own
schema, each entity), no atomic field is longer than Snowplow allows, and ``ttm`` is at most 60 s
ahead of the collector's clock. Otherwise it is a failure that carries every error found.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from usage_ping import __version__
from usage_ping.collector.settings import SnowplowSettings
from usage_ping.collector.snowplow.agents import parse_agent
from usage_ping.collector.snowplow.iglu import (
    CONTEXTS,
    UNSTRUCT_EVENT,
    Resolver,
    SchemaKey,
)
from usage_ping.collector.snowplow.protocol import (
    TP2_VENDOR,
    Failure,
    JSONFieldError,
    decode_json_field,
)

__all__ = [
    "ANONYMOUS_USER_ID",
    "ATOMIC_FIELDS",
    "EVENT_TYPES",
    "Enricher",
    "GoodEvent",
    "RequestContext",
    "anonymise_ip",
    "fingerprint",
    "iso_ms",
    "raw_event",
]

ANONYMOUS_USER_ID = "00000000-0000-0000-0000-000000000000"
V_COLLECTOR = f"usage-ping-{__version__}"
V_ETL = f"usage-ping-enrich-{__version__}"

EVENT_TYPES = {
    "se": "struct",
    "ev": "struct",
    "ue": "unstruct",
    "pv": "page_view",
    "pp": "page_ping",
    "tr": "transaction",
    "ti": "transaction_item",
    "ad": "ad_impression",
}
"""Event codes (``e``) to enriched event names; any other code is bad."""

_EVENT_SCHEMAS = {
    "struct": SchemaKey("com.google.analytics", "event", "jsonschema", "1-0-0"),
    **{
        name: SchemaKey(TP2_VENDOR, name, "jsonschema", "1-0-0")
        for name in ("page_view", "page_ping", "transaction", "transaction_item", "ad_impression")
    },
}
PLATFORMS = frozenset({"web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot", "headset"})

ATOMIC_FIELDS = (
    "app_id", "platform", "etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "event",
    "event_id", "txn_id", "name_tracker", "v_tracker", "v_collector", "v_etl", "user_id",
    "user_ipaddress", "user_fingerprint", "domain_userid", "domain_sessionidx", "network_userid",
    "geo_country", "geo_region", "geo_city", "geo_zipcode", "geo_latitude", "geo_longitude",
    "geo_region_name", "ip_isp", "ip_organization", "ip_domain", "ip_netspeed", "page_url",
    "page_title", "page_referrer", "page_urlscheme", "page_urlhost", "page_urlport",
    "page_urlpath", "page_urlquery", "page_urlfragment", "refr_urlscheme", "refr_urlhost",
    "refr_urlport", "refr_urlpath", "refr_urlquery", "refr_urlfragment", "refr_medium",
    "refr_source", "refr_term", "mkt_medium", "mkt_source", "mkt_term", "mkt_content",
    "mkt_campaign", "contexts", "se_category", "se_action", "se_label", "se_property", "se_value",
    "unstruct_event", "tr_orderid", "tr_affiliation", "tr_total", "tr_tax", "tr_shipping",
    "tr_city", "tr_state", "tr_country", "ti_orderid", "ti_sku", "ti_name", "ti_category",
    "ti_price", "ti_quantity", "pp_xoffset_min", "pp_xoffset_max", "pp_yoffset_min",
    "pp_yoffset_max", "useragent", "br_name", "br_family", "br_version", "br_type",
    "br_renderengine", "br_lang", "br_features_pdf", "br_features_flash", "br_features_java",
    "br_features_director", "br_features_quicktime", "br_features_realplayer",
    "br_features_windowsmedia", "br_features_gears", "br_features_silverlight", "br_cookies",
    "br_colordepth", "br_viewwidth", "br_viewheight", "os_name", "os_family", "os_manufacturer",
    "os_timezone", "dvce_type", "dvce_ismobile", "dvce_screenwidth", "dvce_screenheight",
    "doc_charset", "doc_width", "doc_height", "tr_currency", "tr_total_base", "tr_tax_base",
    "tr_shipping_base", "ti_currency", "ti_price_base", "base_currency", "geo_timezone",
    "mkt_clickid", "mkt_network", "etl_tags", "dvce_sent_tstamp", "refr_domain_userid",
    "refr_dvce_tstamp", "derived_contexts", "domain_sessionid", "derived_tstamp", "event_vendor",
    "event_name", "event_format", "event_version", "event_fingerprint", "true_tstamp",
)  # fmt: skip
"""The enriched event's fields, in Snowplow's order."""
_TEMPLATE: dict[str, Any] = dict.fromkeys(ATOMIC_FIELDS)

_STRINGS = {
    "aid": "app_id", "tna": "name_tracker", "tv": "v_tracker", "uid": "user_id",
    "duid": "domain_userid", "sid": "domain_sessionid", "fp": "user_fingerprint",
    "tz": "os_timezone", "lang": "br_lang", "cs": "doc_charset", "page": "page_title",
    "se_ca": "se_category", "se_ac": "se_action", "se_la": "se_label", "se_pr": "se_property",
    "tr_id": "tr_orderid", "tr_af": "tr_affiliation", "tr_ci": "tr_city", "tr_st": "tr_state",
    "tr_co": "tr_country", "tr_cu": "tr_currency", "ti_id": "ti_orderid", "ti_sk": "ti_sku",
    "ti_na": "ti_name", "ti_nm": "ti_name", "ti_ca": "ti_category", "ti_cu": "ti_currency",
}  # fmt: skip
_INTEGERS = {
    "vid": "domain_sessionidx", "cd": "br_colordepth", "tid": "txn_id", "ti_qu": "ti_quantity",
    "pp_mix": "pp_xoffset_min", "pp_max": "pp_xoffset_max", "pp_miy": "pp_yoffset_min",
    "pp_may": "pp_yoffset_max",
}  # fmt: skip
_DECIMALS = {
    "se_va": "se_value", "tr_tt": "tr_total", "tr_tx": "tr_tax", "tr_sh": "tr_shipping",
    "ti_pr": "ti_price",
}  # fmt: skip
_FLAGS = {
    "cookie": "br_cookies", "f_pdf": "br_features_pdf", "f_fla": "br_features_flash",
    "f_java": "br_features_java", "f_dir": "br_features_director",
    "f_qt": "br_features_quicktime", "f_realp": "br_features_realplayer",
    "f_wma": "br_features_windowsmedia", "f_gears": "br_features_gears",
    "f_ag": "br_features_silverlight",
}  # fmt: skip
_SIZES = {
    "res": ("dvce_screenwidth", "dvce_screenheight"),
    "vp": ("br_viewwidth", "br_viewheight"),
    "ds": ("doc_width", "doc_height"),
}
_TIMESTAMPS = {"dtm": "dvce_created_tstamp", "stm": "dvce_sent_tstamp", "ttm": "true_tstamp"}

MAX_LENGTHS = {
    "app_id": 255, "platform": 255, "name_tracker": 128, "v_tracker": 100, "user_id": 255,
    "user_ipaddress": 128, "user_fingerprint": 128, "domain_userid": 128,
    "network_userid": 128, "page_url": 4096, "page_title": 2000, "page_referrer": 4096,
    "se_category": 1000, "se_action": 1000, "se_label": 4096, "se_property": 1000,
    "tr_orderid": 255, "tr_affiliation": 255, "tr_city": 255, "tr_state": 255,
    "tr_country": 255, "tr_currency": 3, "ti_orderid": 255, "ti_sku": 255, "ti_name": 255,
    "ti_category": 255, "ti_currency": 3, "useragent": 1000, "br_lang": 255,
    "os_timezone": 255, "doc_charset": 128, "domain_sessionid": 128, "event_vendor": 1000,
    "event_name": 1000, "event_format": 128, "event_version": 128,
}  # fmt: skip
"""Snowplow's atomic field limits (characters): a longer value makes the event bad."""

_INTEGER = re.compile(r"-?[0-9]{1,10}")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_SIZE = re.compile(r"([0-9]{1,9})x([0-9]{1,9})")
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TTM_AHEAD = timedelta(seconds=60)
_MAX_INT32 = 2**31 - 1


def iso_ms(moment: datetime) -> str:
    """A UTC datetime as Snowplow writes it: ``2026-11-21T03:00:00.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def fingerprint(parameters: dict[str, str]) -> str:
    """The event's fingerprint: its fields without ``stm``, sorted, hashed (32 hex digits)."""
    text = "".join(
        f"{name}\x1f{parameters[name]}\x1e" for name in sorted(parameters) if name != "stm"
    )
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def anonymise_ip(address: str, octets: int, segments: int) -> str:
    """The address with its last ``octets`` (IPv4) or ``segments`` (IPv6) replaced by ``x``."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return address  # not an address: left as it came, as Snowplow does
    if isinstance(parsed, ipaddress.IPv4Address):
        if not octets:
            return address
        parts = str(parsed).split(".")
        return ".".join(parts[: 4 - octets] + ["x"] * octets)
    if not segments:
        return address
    parts = parsed.exploded.split(":")
    return ":".join(parts[: 8 - segments] + ["x"] * segments)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What the collector records once per request (shared by the request's events)."""

    collector_tstamp: datetime
    api_version: str
    """``tp1`` for ``GET /i``, ``tp2`` for the tp2 path (Micro's ``rawEvent.api.version``)."""
    ip: str | None
    useragent: str | None
    referer: str | None
    hostname: str | None
    network_userid: str
    headers: tuple[str, ...]
    content_type: str | None
    anonymous: bool = False


@dataclass(frozen=True, slots=True)
class GoodEvent:
    """An enriched event, with what the store and the Micro API index it by."""

    event: dict[str, Any]
    raw: dict[str, Any]
    derived_tstamp: datetime
    event_type: str
    schema: str
    contexts: list[str]
    is_bot: bool


def raw_event(parameters: Any, context: RequestContext) -> dict[str, Any]:
    """Micro's ``rawEvent``: the event's fields and the collector's record of the request."""
    return {
        "api": {"vendor": TP2_VENDOR, "version": context.api_version},
        "parameters": parameters,
        "contentType": context.content_type,
        "source": {"name": "usage-ping", "encoding": "UTF-8", "hostname": context.hostname},
        "context": {
            "timestamp": iso_ms(context.collector_tstamp),
            "ipAddress": context.ip,
            "useragent": context.useragent,
            "refererUri": context.referer,
            "headers": list(context.headers),
            "userId": context.network_userid,
        },
    }


def _milliseconds(name: str, value: str, errors: list[str]) -> datetime | None:
    if not value.isascii() or not value.isdigit() or int(value) > _MAX_MS:
        errors.append(f"Field [{name}]: [{value[:100]}] is not a timestamp in milliseconds")
        return None
    return _EPOCH + timedelta(milliseconds=int(value))


def _url(event: dict[str, Any], prefix: str, name: str, value: str, errors: list[str]) -> None:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        errors.append(f"Field [{name}]: [{value[:100]}] is not a URL")
        return
    if not parts.scheme or not parts.hostname:
        return  # relative or odd: kept as the URL, without parts
    event[f"{prefix}scheme"] = parts.scheme
    event[f"{prefix}host"] = parts.hostname
    event[f"{prefix}port"] = port or {"http": 80, "https": 443}.get(parts.scheme)
    event[f"{prefix}path"] = parts.path or None
    event[f"{prefix}query"] = parts.query or None
    event[f"{prefix}fragment"] = parts.fragment or None


class Enricher:
    """Turns raw events into enriched ones with the resolver's schemas and the settings."""

    def __init__(self, resolver: Resolver, settings: SnowplowSettings) -> None:
        self.resolver = resolver
        self.settings = settings

    def enrich(self, parameters: dict[str, str], context: RequestContext) -> GoodEvent | Failure:
        """The enriched event, or the failure with every error found."""
        errors: list[str] = []
        event = dict(_TEMPLATE)
        for name in ("tv", "p", "e"):
            if name not in parameters:
                errors.append(f"Field [{name}]: missing (tv, p and e are required)")
        code = parameters.get("e")
        event_type = EVENT_TYPES.get(code) if code is not None else None
        if code is not None and event_type is None:
            errors.append(f"Field [e]: [{code[:100]}] is not a recognised event code")
        platform = parameters.get("p")
        if platform is not None and platform not in PLATFORMS:
            errors.append(f"Field [p]: [{platform[:100]}] is not a supported tracking platform")
        event["event"] = event_type
        event["platform"] = platform

        for name, value in parameters.items():
            column = _STRINGS.get(name)
            if column is not None:
                event[column] = value
            elif value == "":
                continue
            elif name in _TIMESTAMPS:
                event[_TIMESTAMPS[name]] = _milliseconds(name, value, errors)
            elif name in _INTEGERS:
                if _INTEGER.fullmatch(value) and abs(int(value)) <= _MAX_INT32:
                    event[_INTEGERS[name]] = int(value)
                else:
                    errors.append(f"Field [{name}]: [{value[:100]}] is not an integer")
            elif name in _DECIMALS:
                number = float(value) if _DECIMAL.fullmatch(value) else math.nan
                if math.isfinite(number):
                    event[_DECIMALS[name]] = number
                else:
                    errors.append(f"Field [{name}]: [{value[:100]}] is not a number")
            elif name in _FLAGS:
                if value in ("1", "0"):
                    event[_FLAGS[name]] = value == "1"
                else:
                    errors.append(f"Field [{name}]: [{value[:100]}] is not 1 or 0")
            elif name in _SIZES:
                match = _SIZE.fullmatch(value)
                if match is None:
                    errors.append(f"Field [{name}]: [{value[:100]}] is not a WIDTHxHEIGHT size")
                else:
                    width, height = _SIZES[name]
                    event[width], event[height] = int(match[1]), int(match[2])
            elif name == "url":
                event["page_url"] = value
                _url(event, "page_url", name, value, errors)
            elif name == "refr":
                event["page_referrer"] = value
                _url(event, "refr_url", name, value, errors)

        event_id = parameters.get("eid")
        if event_id:
            try:
                event["event_id"] = str(uuid.UUID(event_id))
            except ValueError:
                errors.append(f"Field [eid]: [{event_id[:100]}] is not a UUID")
        else:
            event["event_id"] = str(uuid.uuid4())

        context_uris = self._entities(parameters, event, errors)
        schema = self._event_schema(event_type, parameters, event, errors)

        collector = context.collector_tstamp
        event["collector_tstamp"] = event["etl_tstamp"] = collector
        true, sent, created = (
            event["true_tstamp"],
            event["dvce_sent_tstamp"],
            event["dvce_created_tstamp"],
        )
        if true is not None and true - collector > _TTM_AHEAD:
            errors.append(f"Field [ttm]: {iso_ms(true)} is more than 60 s ahead of the collector")
        try:
            if true is not None:
                derived = true
            elif created is not None and sent is not None and created < sent:
                derived = collector - (sent - created)
            else:
                derived = collector
        except OverflowError:
            errors.append("Field [dtm]: derived_tstamp falls outside the calendar")
            derived = collector
        event["derived_tstamp"] = derived

        event["v_collector"], event["v_etl"] = V_COLLECTOR, V_ETL
        event["network_userid"] = (
            parameters.get("tnuid") or parameters.get("nuid") or context.network_userid
        )
        address = None if context.anonymous else (parameters.get("ip") or context.ip)
        if address is not None:
            settings = self.settings
            if settings.anonymise_ip_octets or settings.anonymise_ip_segments:
                address = anonymise_ip(
                    address, settings.anonymise_ip_octets, settings.anonymise_ip_segments
                )
        event["user_ipaddress"] = address
        useragent = parameters.get("ua") or context.useragent
        event["useragent"] = useragent
        is_bot = False
        if useragent:
            agent = parse_agent(useragent)
            is_bot = agent.is_bot
            event["br_family"] = event["br_name"] = agent.browser_family
            event["br_version"] = agent.browser_version
            event["os_family"] = event["os_name"] = agent.os_family
            event["dvce_type"] = agent.device_family
            event["derived_contexts"] = {"schema": CONTEXTS, "data": list(agent.contexts)}
        event["event_fingerprint"] = fingerprint(parameters)

        for column, limit in MAX_LENGTHS.items():
            value = event[column]
            if value is not None and len(value) > limit:
                errors.append(f"Field [{column}]: longer than {limit} characters")
        if errors:
            return Failure(errors, parameters)
        assert event_type is not None  # an unknown or missing code is an error above
        for column in ("collector_tstamp", "etl_tstamp", "derived_tstamp", *_TIMESTAMPS.values()):
            if event[column] is not None:
                event[column] = iso_ms(event[column])
        return GoodEvent(
            event=event,
            raw=raw_event(parameters, context),
            derived_tstamp=derived,
            event_type=event_type,
            schema=schema or "",
            contexts=context_uris,
            is_bot=is_bot,
        )

    def _entities(
        self, parameters: dict[str, str], event: dict[str, Any], errors: list[str]
    ) -> list[str]:
        """Validates ``co``/``cx``; returns the entities' schema URIs."""
        try:
            envelope = decode_json_field(parameters, "co", "cx")
        except JSONFieldError as exc:
            errors.append(str(exc))
            return []
        if envelope is None:
            return []
        key, envelope_errors = self.resolver.validate_self_describing(envelope, "contexts")
        if key is not None and (key.vendor, key.name) != (TP2_VENDOR, "contexts"):
            envelope_errors = [f"contexts: {key.uri} is not a contexts schema"]
        if envelope_errors:
            errors.extend(envelope_errors)
            return []
        uris = []
        for index, entity in enumerate(envelope["data"]):
            entity_key, entity_errors = self.resolver.validate_self_describing(
                entity, f"contexts/{index}"
            )
            errors.extend(entity_errors)
            if entity_key is not None:
                uris.append(entity_key.uri)
        event["contexts"] = envelope
        return uris

    def _event_schema(
        self,
        event_type: str | None,
        parameters: dict[str, str],
        event: dict[str, Any],
        errors: list[str],
    ) -> str | None:
        """Sets ``event_vendor`` … ``event_version`` (validating ``ue``); returns the URI."""
        if event_type is None:
            return None
        if event_type != "unstruct":
            key = _EVENT_SCHEMAS[event_type]
        else:
            try:
                envelope = decode_json_field(parameters, "ue_pr", "ue_px")
            except JSONFieldError as exc:
                errors.append(str(exc))
                return None
            if envelope is None:
                errors.append("Field [ue_pr]/[ue_px]: a self-describing event (e=ue) needs one")
                return None
            outer, envelope_errors = self.resolver.validate_self_describing(
                envelope, "unstruct_event"
            )
            if outer is not None and outer.uri != UNSTRUCT_EVENT:
                envelope_errors = [f"unstruct_event: {outer.uri} is not {UNSTRUCT_EVENT}"]
            if envelope_errors:
                errors.extend(envelope_errors)
                return None
            inner, inner_errors = self.resolver.validate_self_describing(
                envelope["data"], "unstruct_event/data"
            )
            if inner is None or inner_errors:
                errors.extend(inner_errors)
                return None
            key = inner
            event["unstruct_event"] = envelope
        event["event_vendor"], event["event_name"] = key.vendor, key.name
        event["event_format"], event["event_version"] = key.format, key.version
        return key.uri
