"""The Snowplow-compatible event collector, a part of the central service.

The official Snowplow trackers (``snowplow-tracker`` on PyPI, ``@snowplow/browser-tracker`` on
npm) send to the service unchanged: ``GET /i`` and ``GET|POST /com.snowplowanalytics.snowplow/tp2``
(:mod:`.routes`). Each event is parsed per the tracker protocol (:mod:`.protocol`), validated
against Iglu schemas, bundled or the operator's (:mod:`.iglu`), enriched (:mod:`.enrich`,
:mod:`.agents`) and stored as a good event, or kept as a bad one with its errors
(:mod:`.tables`). A Snowplow-Micro-compatible API (:mod:`.micro`) lets the operator's tests
read what arrived. ``create_app`` adds it all with :func:`mount_snowplow`, configured by the
``snowplow`` section of the service's settings
(:class:`~usage_ping.collector.settings.SnowplowSettings`).

Example, with the official Python tracker::

    from snowplow_tracker import Emitter, Tracker, StructuredEvent

    tracker = Tracker("backend", Emitter("http://collector.example.com"), app_id="myapp")
    tracker.track(StructuredEvent(category="issues", action="create"))
    tracker.flush()
"""

from usage_ping.collector.snowplow.iglu import STANDARD_CONTEXT, Resolver, SchemaKey
from usage_ping.collector.snowplow.routes import Collector, mount_snowplow

__all__ = ["STANDARD_CONTEXT", "Collector", "Resolver", "SchemaKey", "mount_snowplow"]
