"""The demo's data: realistic, skewed rows for every table, generated with numpy in chunks.

**Scale.** Scale N means about ``N * BASE_ROWS`` (10,000) rows in all: ``--scale 1`` gives about
10 thousand rows (tests), ``--scale 100`` a million, ``--scale 1000`` ten million. Each table
takes a fixed share (:data:`SHARES`): CI builds, events and notes hold about two thirds, as on a
real instance; users are 1 % of the rows.

**Time.** Every row is dated in the 90 days before ``now``, in id order (as a host's rows are),
with a weekly and daily rhythm: weekdays busier than weekends, working hours (UTC) busier than
nights, and activity growing by about 70 % over the 90 days. Users, groups, projects, runners,
environments and clusters are mostly created early (the instance was adopted, then grew); an
activity row only refers to users, projects, issues... that existed when it happened.

**Skew.** Who does what follows a power law over the ids of what existed at the time: the
authors of issues, merge requests, notes, pipelines and events are drawn as
``1 + floor(existing * u ** 3)`` for a uniform ``u``, so the earliest users are the heaviest (the
top 1 % of users author about a third of the rows, most users very few), and projects as
``u ** 2.5``.

**Determinism.** Everything comes from numpy generators seeded with ``(seed, table, chunk)``:
the same seed, scale and ``now`` give the same rows on every database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from usage_ping.demo.columns import (
    Chunk,
    Column,
    Int,
    Obj,
    boolean,
    chance,
    choice,
    date,
    existing,
    id_column,
    integer,
    labels,
    later,
    objects,
    recent,
    skewed,
    stamp,
    text,
)
from usage_ping.demo.timeline import Timeline
from usage_ping.demo.vocabulary import FIRST, LAST, NOUNS, SENTENCES, TOPICS, VERBS

__all__ = [
    "BASE_ROWS",
    "CHUNK_ROWS",
    "EVENT_ACTIONS",
    "SHARES",
    "Generator",
    "TableJob",
    "table_rows",
]

BASE_ROWS = 10_000
"""Rows per unit of scale."""
CHUNK_ROWS = 50_000
"""Rows generated (and written) at a time."""

SHARES: dict[str, float] = {
    "users": 0.010,
    "groups": 0.001,
    "projects": 0.015,
    "members": 0.020,
    "milestones": 0.005,
    "boards": 0.003,
    "board_lists": 0.006,
    "issues": 0.060,
    "merge_requests": 0.040,
    "notes": 0.180,
    "ci_runners": 0.0005,
    "ci_pipelines": 0.080,
    "ci_builds": 0.270,
    "environments": 0.005,
    "deployments": 0.040,
    "wiki_pages": 0.010,
    "packages": 0.010,
    "clusters": 0.0005,
    "alerts": 0.005,
    "events": 0.239,
}
"""Each generated table's share of the rows, in the order they are generated (parents first)."""

_MINIMUM = {"users": 20, "groups": 4, "ci_runners": 3, "clusters": 3, "environments": 5}
"""Rows a table has at the smallest scales, so that every metric has something to count."""


def table_rows(scale: int) -> dict[str, int]:
    """Rows of each generated table at ``scale`` (users without the two bots)."""
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")
    total = scale * BASE_ROWS
    return {t: max(_MINIMUM.get(t, 1), round(total * share)) for t, share in SHARES.items()}


_JOBS: dict[str, tuple[str, float]] = {
    "rspec": ("test", 30),
    "jest": ("test", 12),
    "lint": ("test", 12),
    "build": ("build", 18),
    "deploy": ("deploy", 8),
    "sast": ("test", 5),
    "dependency_scanning": ("test", 4),
    "secret_detection": ("test", 4),
    "container_scanning": ("test", 3),
    "dast": ("dast", 1.5),
    "trigger-downstream": ("deploy", 2.5),
}
"""CI job names: their stage and weight (the security scanners are what the secure stage counts)."""
_JOB_NAMES = objects(list(_JOBS))
_JOB_STAGES = objects([stage for stage, _ in _JOBS.values()])
_JOB_WEIGHTS = np.array([w for _, w in _JOBS.values()]) / sum(w for _, w in _JOBS.values())

_ENVIRONMENTS: dict[str, tuple[str, float]] = {
    "production": ("production", 35),
    "staging": ("staging", 30),
    "review": ("development", 20),
    "testing": ("testing", 10),
    "demo": ("other", 5),
}
"""Environment names: their tier and weight."""
EVENT_ACTIONS: dict[int, str] = {
    1: "created",
    2: "updated",
    3: "closed",
    5: "pushed",
    6: "commented",
    7: "merged",
    8: "joined",
    9: "left",
}
"""``events.action`` codes."""

_ENVIRONMENT_WEIGHTS = np.array([w for _, w in _ENVIRONMENTS.values()]) / 100


# -- the generator --------------------------------------------------------------------------------

Maker = Callable[[int, int, np.random.Generator], Chunk]


@dataclass(frozen=True)
class TableJob:
    """One table to write: its name, rows, and its chunks (generated lazily, in order)."""

    name: str
    rows: int
    chunks: Callable[[], Iterator[Chunk]]


class Generator:
    """Generates the demo's rows table by table; parents are generated before their children.

    Args:
        scale: about ``scale * BASE_ROWS`` rows in all.
        seed: the same seed gives the same rows.
        now: rows are dated in the 90 days before it (default: the current time).
        password_hash: every user's ``password_hash``.

    Example:
        >>> for job in Generator(1, password_hash="x").jobs():  # doctest: +SKIP
        ...     for chunk in job.chunks():
        ...         print(job.name, len(chunk["id"].values))
    """

    def __init__(
        self, scale: int, *, seed: int = 0, now: datetime | None = None, password_hash: str
    ) -> None:
        self.rows = table_rows(scale)
        self.seed = seed
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        self.now = int(moment.timestamp())
        self.timeline = Timeline(self.now)
        self.password_hash = password_hash
        self.humans = self.rows["users"]
        self.support_bot = self.humans + 1
        self.alert_bot = self.humans + 2
        self._makers: dict[str, Maker] = {
            name: getattr(self, f"_{name}") for name in SHARES if name != "users"
        }
        entity = {"users", "groups", "projects", "ci_runners", "environments", "clusters"}
        self.times: dict[str, Int] = {}
        for number, name in enumerate(SHARES):
            if name == "ci_builds":
                continue  # dated by their pipelines
            rng = self._rng(number, 0)
            make = self.timeline.entities if name in entity else self.timeline.activity
            self.times[name] = make(self.rows[name], rng)
        pipelines = self.rows["ci_pipelines"]
        self._pipeline_project = np.zeros(pipelines, dtype=np.int64)
        self._pipeline_user = np.zeros(pipelines, dtype=np.int64)
        self._environment_project = np.zeros(self.rows["environments"], dtype=np.int64)

    def _rng(self, table: int, chunk: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, table, chunk])

    def total_rows(self) -> int:
        """Rows of the generated tables, the two bots included."""
        return sum(self.rows.values()) + 2

    def jobs(self) -> list[TableJob]:
        """The generated tables, parents first."""
        jobs = [TableJob("users", self.humans + 2, self._user_chunks)]
        for number, name in enumerate(SHARES):
            if name != "users":
                jobs.append(TableJob(name, self.rows[name], self._chunker(number, name)))
        return jobs

    def _chunker(self, number: int, name: str) -> Callable[[], Iterator[Chunk]]:
        def chunks() -> Iterator[Chunk]:
            rows = self.rows[name]
            for index, lo in enumerate(range(0, rows, CHUNK_ROWS)):
                yield self._makers[name](
                    lo, min(rows, lo + CHUNK_ROWS), self._rng(number, index + 1)
                )

        return chunks

    # -- who existed when -----------------------------------------------------------------------

    def _user(self, rng: np.random.Generator, at: Int, power: float = 3.0) -> Int:
        return skewed(rng, existing(self.times["users"], at), power)

    def _project(self, rng: np.random.Generator, at: Int, power: float = 2.5) -> Int:
        return skewed(rng, existing(self.times["projects"], at), power)

    # -- tables ---------------------------------------------------------------------------------

    def _user_chunks(self) -> Iterator[Chunk]:
        rng = self._rng(0, 1)
        n = self.humans
        created = self.times["users"]
        ids = np.arange(1, n + 3, dtype=np.int64)
        first = FIRST[rng.integers(0, len(FIRST), n)]
        last = LAST[rng.integers(0, len(LAST), n)]
        usernames = [f"{a}.{b}{i}" for a, b, i in zip(first, last, ids.tolist(), strict=False)]
        usernames[0] = "root"
        usernames += ["support-bot", "alert-bot"]
        names = [f"{a.title()} {b.title()}" for a, b in zip(first, last, strict=True)]
        names[0] = "Administrator"
        names += ["Support Bot", "Alert Bot"]
        state = choice(rng, n, {"active": 88, "blocked": 5, "deactivated": 7})
        state[0] = "active"
        admin = chance(rng, n, 0.005)
        admin[0] = True
        # Heavy users (low ids) sign in most, and most recently.
        rank = np.arange(n) / n
        signed_in = rng.random(n) < 0.92
        last_sign_in = (
            self.now
            - 1
            - np.floor((self.now - 1 - created) * rng.random(n) * (0.05 + rank)).astype(np.int64)
        )
        last_sign_in = np.maximum(last_sign_in, created)
        bots = np.array([self.timeline.start, self.timeline.start], dtype=np.int64)
        yield {
            "id": integer(ids),
            "username": text(objects(usernames)),
            "name": text(objects(names)),
            "email": text(objects([f"{u}@example.com" for u in usernames])),
            "password_hash": text(objects([self.password_hash] * (n + 2))),
            "state": text(np.concatenate((state, objects(["active", "active"])))),
            "user_type": Column(
                "text",
                np.concatenate((objects([""] * n), objects(["support_bot", "alert_bot"]))),
                np.concatenate((np.ones(n, dtype=bool), np.zeros(2, dtype=bool))),
            ),
            "admin": boolean(np.concatenate((admin, [False, False]))),
            "sign_in_count": integer(
                np.concatenate(
                    (np.floor(600 * (1 - rank) ** 4 * rng.random(n)).astype(np.int64), [0, 0])
                )
            ),
            "last_sign_in_at": stamp(
                np.concatenate((last_sign_in, bots)),
                np.concatenate((~signed_in, [True, True])),
            ),
            "last_activity_on": date(
                np.concatenate((last_sign_in // 86_400, bots // 86_400)),
                np.concatenate((~signed_in, [True, True])),
            ),
            "failed_attempts": integer(
                np.where(chance(rng, n + 2, 0.03), rng.integers(1, 5, n + 2), 0)
            ),
            "locked_until": stamp(np.zeros(n + 2, dtype=np.int64), np.ones(n + 2, dtype=bool)),
            "created_at": stamp(np.concatenate((created, bots))),
        }

    def _groups(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["groups"][lo:hi]
        ids = np.arange(lo + 1, hi + 1, dtype=np.int64)
        subgroup = chance(rng, n, 0.15) & (ids > 1)
        parent = skewed(rng, np.maximum(ids - 1, 1), 2.0)
        names = NOUNS[rng.integers(0, len(NOUNS), n)]
        return {
            "id": integer(ids),
            "name": text(
                objects([f"{w.title()} team {i}" for w, i in zip(names, ids.tolist(), strict=True)])
            ),
            "path": text(labels("group-", ids)),
            "parent_id": integer(parent, ~subgroup),
            "visibility_level": integer(choice(rng, n, {0: 60, 10: 20, 20: 20})),
            "owner_id": integer(self._user(rng, at, 2.0)),
            "created_at": stamp(at),
        }

    def _projects(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["projects"][lo:hi]
        ids = np.arange(lo + 1, hi + 1, dtype=np.int64)
        words = NOUNS[rng.integers(0, len(NOUNS), n)]
        names = objects([f"{w}-{i}" for w, i in zip(words, ids.tolist(), strict=True)])
        prometheus = chance(rng, n, 0.10)
        return {
            "id": integer(ids),
            "name": text(names),
            "path": text(names),
            "namespace_id": integer(skewed(rng, existing(self.times["groups"], at), 2.0)),
            "creator_id": integer(self._user(rng, at)),
            "visibility_level": integer(choice(rng, n, {0: 55, 10: 15, 20: 30})),
            "archived": boolean(chance(rng, n, 0.05)),
            "wiki_enabled": boolean(chance(rng, n, 0.70)),
            "service_desk_enabled": boolean(chance(rng, n, 0.12)),
            "container_registry_enabled": boolean(chance(rng, n, 0.45)),
            "prometheus_active": boolean(prometheus),
            "prometheus_activated_at": stamp(later(rng, at, self.now), ~prometheus),
            "star_count": integer(np.floor(rng.random(n) ** 4 * 500).astype(np.int64)),
            "repository_size": integer(np.floor(rng.random(n) ** 3 * 2e9).astype(np.int64)),
            "last_activity_at": stamp(later(rng, at, self.now, 0.3)),
            "created_at": stamp(at),
        }

    def _members(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["members"][lo:hi]
        group = chance(rng, n, 0.4)
        source = np.where(
            group,
            skewed(rng, existing(self.times["groups"], at), 2.0),
            self._project(rng, at, 2.0),
        )
        return {
            "id": id_column(lo, hi),
            "user_id": integer(self._user(rng, at, 1.5)),
            "source_type": text(np.where(group, "Group", "Project").astype(object)),
            "source_id": integer(source),
            "access_level": integer(choice(rng, n, {10: 10, 20: 15, 30: 50, 40: 20, 50: 5})),
            "created_at": stamp(at),
        }

    def _milestones(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["milestones"][lo:hi]
        major, minor = rng.integers(1, 6, n), rng.integers(0, 20, n)
        return {
            "id": id_column(lo, hi),
            "project_id": integer(self._project(rng, at)),
            "title": text(
                objects([f"v{a}.{b}" for a, b in zip(major.tolist(), minor.tolist(), strict=True)])
            ),
            "state": text(choice(rng, n, {"active": 65, "closed": 35})),
            "due_date": date(at // 86_400 + rng.integers(14, 90, n), chance(rng, n, 0.25)),
            "created_at": stamp(at),
        }

    def _boards(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["boards"][lo:hi]
        names = {"Development": 40, "Release": 20, "Triage": 20, "Roadmap": 10, "Bugs": 10}
        return {
            "id": id_column(lo, hi),
            "project_id": integer(self._project(rng, at)),
            "name": text(choice(rng, n, names)),
            "created_at": stamp(at),
        }

    def _board_lists(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["board_lists"][lo:hi]
        kinds = {"label": 70, "assignee": 12, "milestone": 10, "iteration": 8}
        return {
            "id": id_column(lo, hi),
            "board_id": integer(skewed(rng, existing(self.times["boards"], at), 1.5)),
            "list_type": text(choice(rng, n, kinds)),
            "position": integer(rng.integers(0, 8, n)),
            "created_at": stamp(at),
        }

    def _title(self, rng: np.random.Generator, n: int) -> Obj:
        verbs = VERBS[rng.integers(0, len(VERBS), n)]
        topics = TOPICS[rng.integers(0, len(TOPICS), n)]
        nouns = NOUNS[rng.integers(0, len(NOUNS), n)]
        titles: Obj = verbs + " " + topics + " in " + nouns
        return titles

    def _issues(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["issues"][lo:hi]
        age_days = (self.now - at) / 86_400
        closed = rng.random(n) < 0.75 * (1 - np.exp(-age_days / 12))
        desk = chance(rng, n, 0.03)
        author = np.where(desk, self.support_bot, self._user(rng, at))
        assigned = chance(rng, n, 0.6)
        in_milestone = chance(rng, n, 0.3) & (existing(self.times["milestones"], at) > 0)
        weighted = chance(rng, n, 0.4)
        customers = rng.integers(1, 5000, n)
        return {
            "id": id_column(lo, hi),
            "project_id": integer(self._project(rng, at)),
            "author_id": integer(author),
            "assignee_id": integer(self._user(rng, at, 2.0), ~assigned),
            "milestone_id": integer(
                skewed(rng, existing(self.times["milestones"], at), 1.0), ~in_milestone
            ),
            "title": text(self._title(rng, n)),
            "state": text(np.where(closed, "closed", "opened").astype(object)),
            "issue_type": text(choice(rng, n, {"issue": 90, "incident": 7, "test_case": 3})),
            "confidential": boolean(chance(rng, n, 0.05)),
            "service_desk": boolean(desk),
            "external_author": Column(
                "text", objects([f"customer{c}@example.org" for c in customers.tolist()]), ~desk
            ),
            "weight": integer(rng.integers(0, 10, n), ~weighted),
            "closed_at": stamp(later(rng, at, self.now, 2.0), ~closed),
            "created_at": stamp(at),
        }

    def _merge_requests(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["merge_requests"][lo:hi]
        done = rng.random(n) < 0.9 * (1 - np.exp(-(self.now - at) / 86_400 / 4))
        state = np.where(done, choice(rng, n, {"merged": 80, "closed": 17, "locked": 3}), "opened")
        merged = state == "merged"
        return {
            "id": id_column(lo, hi),
            "target_project_id": integer(self._project(rng, at)),
            "author_id": integer(self._user(rng, at)),
            "assignee_id": integer(self._user(rng, at, 2.0), chance(rng, n, 0.3)),
            "merge_user_id": integer(self._user(rng, at, 2.0), ~merged),
            "title": text(self._title(rng, n)),
            "state": text(state.astype(object)),
            "draft": boolean(chance(rng, n, 0.25) & (state == "opened")),
            "additions": integer(np.floor(rng.random(n) ** 3 * 2000).astype(np.int64)),
            "deletions": integer(np.floor(rng.random(n) ** 3 * 1000).astype(np.int64)),
            "merged_at": stamp(later(rng, at, self.now, 4.0), ~merged),
            "created_at": stamp(at),
        }

    def _notes(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["notes"][lo:hi]
        kind = choice(rng, n, {"Issue": 45, "MergeRequest": 45, "Commit": 7, "Snippet": 3})
        issues = existing(self.times["issues"], at)
        requests = existing(self.times["merge_requests"], at)
        kind = np.where((kind == "Issue") & (issues == 0), "Commit", kind)
        kind = np.where((kind == "MergeRequest") & (requests == 0), "Commit", kind)
        target = np.where(
            kind == "Issue",
            recent(rng, issues),
            np.where(kind == "MergeRequest", recent(rng, requests), rng.integers(1, 100_000, n)),
        )
        return {
            "id": id_column(lo, hi),
            "project_id": integer(self._project(rng, at)),
            "author_id": integer(self._user(rng, at)),
            "noteable_type": text(kind.astype(object)),
            "noteable_id": integer(target),
            "system": boolean(chance(rng, n, 0.3)),
            "note": text(SENTENCES[rng.integers(0, len(SENTENCES), n)]),
            "created_at": stamp(at),
        }

    def _ci_runners(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["ci_runners"][lo:hi]
        ids = np.arange(lo + 1, hi + 1, dtype=np.int64)
        active = chance(rng, n, 0.85)
        contacted = np.where(
            active, self.now - 1 - rng.integers(0, 7200, n), later(rng, at, self.now, 2.0)
        )
        return {
            "id": integer(ids),
            "runner_type": text(choice(rng, n, {"instance": 30, "group": 30, "project": 40})),
            "description": text(labels("runner-", ids)),
            "active": boolean(active),
            "contacted_at": stamp(contacted),
            "created_at": stamp(at),
        }

    def _ci_pipelines(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["ci_pipelines"][lo:hi]
        project, user = self._project(rng, at), self._user(rng, at)
        self._pipeline_project[lo:hi] = project
        self._pipeline_user[lo:hi] = user
        sources = {"push": 55, "merge_request_event": 25, "schedule": 8, "web": 6, "api": 4}
        status = choice(rng, n, {"success": 76, "failed": 15, "canceled": 6, "skipped": 3})
        duration = 30 + np.floor(rng.random(n) ** 2 * 3600).astype(np.int64)
        running = (self.now - at) < duration
        status = np.where(running, "running", status)
        return {
            "id": id_column(lo, hi),
            "project_id": integer(project),
            "user_id": integer(user),
            "source": text(choice(rng, n, sources)),
            "status": text(status.astype(object)),
            "ref": text(choice(rng, n, {"main": 50, "develop": 10, "feature/change": 40})),
            "duration": integer(duration, running | chance(rng, n, 0.03)),
            "finished_at": stamp(np.minimum(at + duration, self.now - 1), running),
            "created_at": stamp(at),
        }

    def _ci_builds(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        pipelines = self.rows["ci_pipelines"]
        index = (np.arange(lo, hi, dtype=np.int64) * pipelines) // self.rows["ci_builds"]
        at = np.minimum(self.times["ci_pipelines"][index] + rng.integers(0, 180, n), self.now - 1)
        codes = rng.choice(len(_JOBS), size=n, p=_JOB_WEIGHTS)
        names = _JOB_NAMES[codes]
        stage = _JOB_STAGES[codes]
        bridge = names == "trigger-downstream"
        runner = chance(rng, n, 0.9) & ~bridge
        status = choice(rng, n, {"success": 78, "failed": 12, "canceled": 6, "skipped": 4})
        return {
            "id": id_column(lo, hi),
            "pipeline_id": integer(index + 1),
            "project_id": integer(self._pipeline_project[index]),
            "user_id": integer(self._pipeline_user[index]),
            "runner_id": integer(skewed(rng, np.full(n, self.rows["ci_runners"]), 2.0), ~runner),
            "name": text(names),
            "stage": text(stage),
            "type": text(np.where(bridge, "Ci::Bridge", "Ci::Build").astype(object)),
            "status": text(status),
            "duration": integer(
                10 + np.floor(rng.random(n) ** 2 * 1800).astype(np.int64), chance(rng, n, 0.05)
            ),
            "queued_duration": integer(np.floor(rng.random(n) ** 4 * 600).astype(np.int64)),
            "created_at": stamp(at),
        }

    def _environments(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["environments"][lo:hi]
        project = self._project(rng, at, 2.0)
        self._environment_project[lo:hi] = project
        codes = rng.choice(len(_ENVIRONMENTS), size=n, p=_ENVIRONMENT_WEIGHTS)
        return {
            "id": id_column(lo, hi),
            "project_id": integer(project),
            "name": text(objects(list(_ENVIRONMENTS))[codes]),
            "tier": text(objects([tier for tier, _ in _ENVIRONMENTS.values()])[codes]),
            "state": text(choice(rng, n, {"available": 80, "stopped": 20})),
            "created_at": stamp(at),
        }

    def _deployments(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["deployments"][lo:hi]
        environment = skewed(rng, existing(self.times["environments"], at), 2.0)
        status = choice(rng, n, {"success": 80, "failed": 12, "canceled": 5, "running": 3})
        duration = 20 + rng.integers(0, 900, n)
        running = status == "running"
        return {
            "id": id_column(lo, hi),
            "project_id": integer(self._environment_project[environment - 1]),
            "environment_id": integer(environment),
            "user_id": integer(self._user(rng, at)),
            "status": text(status),
            "ref": text(choice(rng, n, {"main": 70, "v1.0": 10, "release": 20})),
            "finished_at": stamp(np.minimum(at + duration, self.now - 1), running),
            "created_at": stamp(at),
        }

    def _wiki_pages(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["wiki_pages"][lo:hi]
        ids = np.arange(lo + 1, hi + 1, dtype=np.int64)
        topics = TOPICS[rng.integers(0, len(TOPICS), n)]
        titles = objects(
            [f"{t.capitalize()} {i}" for t, i in zip(topics, ids.tolist(), strict=True)]
        )
        slugs = objects([t.lower().replace(" ", "-") for t in titles.tolist()])
        return {
            "id": integer(ids),
            "project_id": integer(self._project(rng, at)),
            "author_id": integer(self._user(rng, at)),
            "title": text(titles),
            "slug": text(slugs),
            "content": text(SENTENCES[rng.integers(0, len(SENTENCES), n)]),
            "updated_at": stamp(later(rng, at, self.now, 3.0)),
            "created_at": stamp(at),
        }

    def _packages(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["packages"][lo:hi]
        kinds = {"npm": 30, "maven": 20, "pypi": 20, "generic": 15, "nuget": 8, "conan": 7}
        nouns = NOUNS[rng.integers(0, len(NOUNS), n)]
        a, b, c = rng.integers(0, 4, n), rng.integers(0, 30, n), rng.integers(0, 12, n)
        return {
            "id": id_column(lo, hi),
            "project_id": integer(self._project(rng, at)),
            "creator_id": integer(self._user(rng, at), chance(rng, n, 0.05)),
            "package_type": text(choice(rng, n, kinds)),
            "name": text("demo-" + nouns),
            "version": text(
                objects(
                    [
                        f"{x}.{y}.{z}"
                        for x, y, z in zip(a.tolist(), b.tolist(), c.tolist(), strict=True)
                    ]
                )
            ),
            "size": integer(1000 + np.floor(rng.random(n) ** 3 * 5e7).astype(np.int64)),
            "created_at": stamp(at),
        }

    def _clusters(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["clusters"][lo:hi]
        return {
            "id": id_column(lo, hi),
            "project_id": integer(self._project(rng, at, 2.0)),
            "user_id": integer(self._user(rng, at, 2.0)),
            "provider_type": text(choice(rng, n, {"gcp": 40, "aws": 35, "user": 25})),
            "enabled": boolean(chance(rng, n, 0.85)),
            "created_at": stamp(at),
        }

    def _alerts(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["alerts"][lo:hi]
        severity = {"critical": 10, "high": 20, "medium": 35, "low": 25, "info": 10}
        status = {"triggered": 15, "acknowledged": 15, "resolved": 65, "ignored": 5}
        return {
            "id": id_column(lo, hi),
            "project_id": integer(self._project(rng, at, 2.0)),
            "title": text("High " + TOPICS[rng.integers(0, len(TOPICS), n)] + " rate"),
            "severity": text(choice(rng, n, severity)),
            "status": text(choice(rng, n, status)),
            "created_at": stamp(at),
        }

    def _events(self, lo: int, hi: int, rng: np.random.Generator) -> Chunk:
        n = hi - lo
        at = self.times["events"][lo:hi]
        action = choice(rng, n, {1: 15, 2: 10, 3: 5, 5: 40, 6: 20, 7: 5, 8: 3, 9: 2})
        kind = choice(rng, n, {"Issue": 45, "MergeRequest": 35, "Note": 20})
        untargeted = np.isin(action, (5, 8, 9))
        kind = np.where(action == 7, "MergeRequest", np.where(action == 6, "Note", kind))
        issues = existing(self.times["issues"], at)
        requests = existing(self.times["merge_requests"], at)
        notes = existing(self.times["notes"], at)
        target = np.where(
            kind == "Issue",
            recent(rng, issues),
            np.where(kind == "MergeRequest", recent(rng, requests), recent(rng, notes)),
        )
        return {
            "id": id_column(lo, hi),
            "project_id": integer(self._project(rng, at)),
            "author_id": integer(self._user(rng, at)),
            "action": integer(action),
            "target_type": Column("text", kind.astype(object), untargeted),
            "target_id": integer(target, untargeted),
            "created_at": stamp(at),
        }
