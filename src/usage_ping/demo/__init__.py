"""The demo host application's data side: its tables, a fast data generator and its telemetry.

- :mod:`.models`: the platform's tables (users, groups, projects, issues, merge requests, CI...);
- :func:`seed`: about ``scale * 10,000`` realistic, skewed rows over the last 90 days;
- :func:`simulate_events`: days of known events and plain counters into the counter store;
- :mod:`.config`: the demo's metric dictionary, known events, aggregated metrics, feature flags,
  plain counters and ``usage-ping.yml`` template (package data), and :func:`write_config`;
- :mod:`.metrics`: the callables its dictionary names;
- :mod:`.cli`: ``usage-ping demo seed`` and ``usage-ping demo simulate``.
"""

from usage_ping.demo.config import demo_counters, write_config
from usage_ping.demo.seed import DEMO_PASSWORD, SeedReport, seed
from usage_ping.demo.simulate import SimulationReport, simulate_events

__all__ = [
    "DEMO_PASSWORD",
    "SeedReport",
    "SimulationReport",
    "demo_counters",
    "seed",
    "simulate_events",
    "write_config",
]
