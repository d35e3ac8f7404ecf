"""The demo platform's tables: SQLAlchemy Core, portable across PostgreSQL, MariaDB and SQLite.

A small DevOps platform modelled on GitLab: users and their groups, projects with issues, notes,
milestones, boards, merge requests, CI pipelines and builds, environments, deployments, wiki pages,
packages, clusters and alerts; ``events`` is the activity stream; ``application_settings`` and
``licenses`` hold one row each; ``usage_ping_feature_flags`` is the host's flag table that
:meth:`usage_ping.events.FeatureFlags.from_table` reads.

Every table has an integer primary key ``id`` (what the batch counters walk) and a ``created_at``
(aware UTC). The indexes are those the demo's metrics need: ``created_at`` for the 7d and 28d
windows, ``(<user column>, created_at)`` for distinct users over a window (the distinct counters
walk the user column), and the foreign keys that pages join on.

Example:
    >>> from usage_ping.demo.models import metadata, issues
    >>> metadata.create_all(engine)  # doctest: +SKIP
    >>> conn.execute(sa.select(sa.func.count()).select_from(issues)).scalar()  # doctest: +SKIP
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "ACCESS_LEVELS",
    "VISIBILITY_LEVELS",
    "alerts",
    "application_settings",
    "board_lists",
    "boards",
    "ci_builds",
    "ci_pipelines",
    "ci_runners",
    "clusters",
    "deployments",
    "environments",
    "events",
    "feature_flags",
    "groups",
    "issues",
    "licenses",
    "members",
    "merge_requests",
    "metadata",
    "milestones",
    "notes",
    "packages",
    "projects",
    "users",
    "wiki_pages",
]

metadata = sa.MetaData()
"""Every table of the demo platform."""

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""Primary keys: BIGINT, except INTEGER on SQLite (only that makes them rowid aliases that
autoincrement)."""
STAMP = sa.DateTime(timezone=True)
"""timestamptz on PostgreSQL, DATETIME on MariaDB and SQLite; always UTC."""

VISIBILITY_LEVELS = {0: "private", 10: "internal", 20: "public"}
"""``visibility_level`` codes of groups and projects, as GitLab's."""
ACCESS_LEVELS = {10: "guest", 20: "reporter", 30: "developer", 40: "maintainer", 50: "owner"}
"""``members.access_level`` codes."""


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, primary_key=True)


def _ref(name: str, target: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, sa.ForeignKey(f"{target}.id"), nullable=nullable)


def _created() -> sa.Column[object]:
    return sa.Column("created_at", STAMP, nullable=False)


users = sa.Table(
    "users",
    metadata,
    _id(),
    sa.Column("username", sa.String(100), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(200), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # active, blocked, deactivated
    sa.Column("user_type", sa.String(20)),  # NULL for humans; support_bot, alert_bot
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("sign_in_count", sa.Integer, nullable=False),
    sa.Column("last_sign_in_at", STAMP),
    sa.Column("last_activity_on", sa.Date),
    sa.Column("failed_attempts", sa.Integer, nullable=False),
    sa.Column("locked_until", STAMP),
    _created(),
    sa.Index("ix_users_created_at", "created_at"),
    sa.Index("ix_users_state_user_type", "state", "user_type"),
)
"""Accounts; ``password_hash`` is :func:`usage_ping.demo.passwords.hash_password`'s output."""

groups = sa.Table(
    "groups",
    metadata,
    _id(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("path", sa.String(200), nullable=False, unique=True),
    _ref("parent_id", "groups", nullable=True),
    sa.Column("visibility_level", sa.Integer, nullable=False),
    _ref("owner_id", "users"),
    _created(),
    sa.Index("ix_groups_created_at", "created_at"),
    sa.Index("ix_groups_owner_id_created_at", "owner_id", "created_at"),
)

projects = sa.Table(
    "projects",
    metadata,
    _id(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("path", sa.String(200), nullable=False),
    _ref("namespace_id", "groups"),
    _ref("creator_id", "users"),
    sa.Column("visibility_level", sa.Integer, nullable=False),
    sa.Column("archived", sa.Boolean, nullable=False),
    sa.Column("wiki_enabled", sa.Boolean, nullable=False),
    sa.Column("service_desk_enabled", sa.Boolean, nullable=False),
    sa.Column("container_registry_enabled", sa.Boolean, nullable=False),
    sa.Column("prometheus_active", sa.Boolean, nullable=False),
    sa.Column("prometheus_activated_at", STAMP),
    sa.Column("star_count", sa.Integer, nullable=False),
    sa.Column("repository_size", sa.BigInteger, nullable=False),
    sa.Column("last_activity_at", STAMP),
    _created(),
    sa.Index("ix_projects_created_at", "created_at"),
    sa.Index("ix_projects_creator_id_created_at", "creator_id", "created_at"),
    sa.Index("ix_projects_namespace_id", "namespace_id"),
    sa.Index("ix_projects_prometheus_activated_at", "prometheus_activated_at"),
)

members = sa.Table(
    "members",
    metadata,
    _id(),
    _ref("user_id", "users"),
    sa.Column("source_type", sa.String(20), nullable=False),  # Group or Project
    sa.Column("source_id", sa.BigInteger, nullable=False),
    sa.Column("access_level", sa.Integer, nullable=False),
    _created(),
    sa.Index("ix_members_created_at", "created_at"),
    sa.Index("ix_members_user_id_created_at", "user_id", "created_at"),
    sa.Index("ix_members_source", "source_type", "source_id"),
)

milestones = sa.Table(
    "milestones",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # active, closed
    sa.Column("due_date", sa.Date),
    _created(),
    sa.Index("ix_milestones_created_at", "created_at"),
    sa.Index("ix_milestones_project_id", "project_id"),
)

boards = sa.Table(
    "boards",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    sa.Column("name", sa.String(200), nullable=False),
    _created(),
    sa.Index("ix_boards_created_at", "created_at"),
    sa.Index("ix_boards_project_id", "project_id"),
)

board_lists = sa.Table(
    "board_lists",
    metadata,
    _id(),
    _ref("board_id", "boards"),
    sa.Column("list_type", sa.String(20), nullable=False),  # label, assignee, milestone, ...
    sa.Column("position", sa.Integer, nullable=False),
    _created(),
    sa.Index("ix_board_lists_created_at", "created_at"),
    sa.Index("ix_board_lists_board_id", "board_id"),
)

issues = sa.Table(
    "issues",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    _ref("author_id", "users"),
    _ref("assignee_id", "users", nullable=True),
    _ref("milestone_id", "milestones", nullable=True),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # opened, closed
    sa.Column("issue_type", sa.String(20), nullable=False),  # issue, incident, test_case
    sa.Column("confidential", sa.Boolean, nullable=False),
    sa.Column("service_desk", sa.Boolean, nullable=False),
    sa.Column("external_author", sa.String(200)),  # the e-mail of a service desk issue
    sa.Column("weight", sa.Integer),
    sa.Column("closed_at", STAMP),
    _created(),
    sa.Index("ix_issues_created_at", "created_at"),
    sa.Index("ix_issues_author_id_created_at", "author_id", "created_at"),
    sa.Index("ix_issues_project_id_created_at", "project_id", "created_at"),
    sa.Index("ix_issues_assignee_id", "assignee_id"),
    sa.Index("ix_issues_milestone_id", "milestone_id"),
)

merge_requests = sa.Table(
    "merge_requests",
    metadata,
    _id(),
    _ref("target_project_id", "projects"),
    _ref("author_id", "users"),
    _ref("assignee_id", "users", nullable=True),
    _ref("merge_user_id", "users", nullable=True),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # opened, merged, closed, locked
    sa.Column("draft", sa.Boolean, nullable=False),
    sa.Column("additions", sa.Integer, nullable=False),
    sa.Column("deletions", sa.Integer, nullable=False),
    sa.Column("merged_at", STAMP),
    _created(),
    sa.Index("ix_merge_requests_created_at", "created_at"),
    sa.Index("ix_merge_requests_author_id_created_at", "author_id", "created_at"),
    sa.Index("ix_merge_requests_target_project_id", "target_project_id"),
    sa.Index("ix_merge_requests_merge_user_id", "merge_user_id"),
)

notes = sa.Table(
    "notes",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    _ref("author_id", "users"),
    sa.Column("noteable_type", sa.String(20), nullable=False),  # Issue, MergeRequest, Commit
    sa.Column("noteable_id", sa.BigInteger, nullable=False),
    sa.Column("system", sa.Boolean, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    _created(),
    sa.Index("ix_notes_created_at", "created_at"),
    sa.Index("ix_notes_author_id_created_at", "author_id", "created_at"),
    sa.Index("ix_notes_noteable", "noteable_type", "noteable_id"),
    sa.Index("ix_notes_project_id", "project_id"),
)

ci_runners = sa.Table(
    "ci_runners",
    metadata,
    _id(),
    sa.Column("runner_type", sa.String(20), nullable=False),  # instance, group, project
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("contacted_at", STAMP),
    _created(),
    sa.Index("ix_ci_runners_created_at", "created_at"),
)

ci_pipelines = sa.Table(
    "ci_pipelines",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    _ref("user_id", "users"),
    sa.Column("source", sa.String(30), nullable=False),  # push, merge_request_event, ...
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("ref", sa.String(100), nullable=False),
    sa.Column("duration", sa.Integer),
    sa.Column("finished_at", STAMP),
    _created(),
    sa.Index("ix_ci_pipelines_created_at", "created_at"),
    sa.Index("ix_ci_pipelines_user_id_created_at", "user_id", "created_at"),
    sa.Index("ix_ci_pipelines_project_id", "project_id"),
)

ci_builds = sa.Table(
    "ci_builds",
    metadata,
    _id(),
    _ref("pipeline_id", "ci_pipelines"),
    _ref("project_id", "projects"),
    _ref("user_id", "users"),
    _ref("runner_id", "ci_runners", nullable=True),
    sa.Column("name", sa.String(100), nullable=False),  # rspec, lint, sast, ...
    sa.Column("stage", sa.String(30), nullable=False),
    sa.Column("type", sa.String(20), nullable=False),  # Ci::Build, Ci::Bridge
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("duration", sa.Integer),
    sa.Column("queued_duration", sa.Integer, nullable=False),
    _created(),
    sa.Index("ix_ci_builds_created_at", "created_at"),
    sa.Index("ix_ci_builds_user_id_created_at", "user_id", "created_at"),
    sa.Index("ix_ci_builds_pipeline_id", "pipeline_id"),
    sa.Index("ix_ci_builds_project_id", "project_id"),
    sa.Index("ix_ci_builds_runner_id", "runner_id"),
    sa.Index("ix_ci_builds_name_user_id", "name", "user_id"),  # users of each job, e.g. sast
)

environments = sa.Table(
    "environments",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("tier", sa.String(20), nullable=False),  # production, staging, testing, ...
    sa.Column("state", sa.String(20), nullable=False),  # available, stopped
    _created(),
    sa.Index("ix_environments_created_at", "created_at"),
    sa.Index("ix_environments_project_id", "project_id"),
)

deployments = sa.Table(
    "deployments",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    _ref("environment_id", "environments"),
    _ref("user_id", "users"),
    sa.Column("status", sa.String(20), nullable=False),  # success, failed, canceled, running
    sa.Column("ref", sa.String(100), nullable=False),
    sa.Column("finished_at", STAMP),
    _created(),
    sa.Index("ix_deployments_created_at", "created_at"),
    sa.Index("ix_deployments_user_id_created_at", "user_id", "created_at"),
    sa.Index("ix_deployments_environment_id", "environment_id"),
    sa.Index("ix_deployments_project_id", "project_id"),
)

wiki_pages = sa.Table(
    "wiki_pages",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    _ref("author_id", "users"),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("slug", sa.String(255), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("updated_at", STAMP, nullable=False),
    _created(),
    sa.Index("ix_wiki_pages_created_at", "created_at"),
    sa.Index("ix_wiki_pages_author_id_created_at", "author_id", "created_at"),
    sa.Index("ix_wiki_pages_project_id", "project_id"),
)

packages = sa.Table(
    "packages",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    _ref("creator_id", "users", nullable=True),
    sa.Column("package_type", sa.String(20), nullable=False),  # npm, maven, pypi, ...
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.String(50), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    _created(),
    sa.Index("ix_packages_created_at", "created_at"),
    sa.Index("ix_packages_project_id_created_at", "project_id", "created_at"),
    sa.Index("ix_packages_creator_id_created_at", "creator_id", "created_at"),
)

clusters = sa.Table(
    "clusters",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    _ref("user_id", "users"),
    sa.Column("provider_type", sa.String(20), nullable=False),  # gcp, aws, user
    sa.Column("enabled", sa.Boolean, nullable=False),
    _created(),
    sa.Index("ix_clusters_created_at", "created_at"),
    sa.Index("ix_clusters_user_id_created_at", "user_id", "created_at"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),  # critical, high, medium, low, info
    sa.Column("status", sa.String(20), nullable=False),  # triggered, acknowledged, resolved
    _created(),
    sa.Index("ix_alerts_created_at", "created_at"),
    sa.Index("ix_alerts_project_id_created_at", "project_id", "created_at"),
)

events = sa.Table(
    "events",
    metadata,
    _id(),
    _ref("project_id", "projects"),
    _ref("author_id", "users"),
    sa.Column("action", sa.SmallInteger, nullable=False),  # see EVENT_ACTIONS in seed data
    sa.Column("target_type", sa.String(20)),
    sa.Column("target_id", sa.BigInteger),
    _created(),
    sa.Index("ix_events_created_at", "created_at"),
    sa.Index("ix_events_author_id_created_at", "author_id", "created_at"),
    sa.Index("ix_events_project_id", "project_id"),
)
"""The activity stream: one row per action of a user in a project."""

application_settings = sa.Table(
    "application_settings",
    metadata,
    _id(),
    sa.Column("signup_enabled", sa.Boolean, nullable=False),
    sa.Column("gravatar_enabled", sa.Boolean, nullable=False),
    sa.Column("container_registry_enabled", sa.Boolean, nullable=False),
    sa.Column("service_desk_enabled", sa.Boolean, nullable=False),
    sa.Column("default_project_visibility", sa.Integer, nullable=False),
    sa.Column("password_authentication_enabled", sa.Boolean, nullable=False),
    sa.Column("session_expire_minutes", sa.Integer, nullable=False),
    sa.Column("updated_at", STAMP, nullable=False),
    _created(),
)
"""The instance's settings: one row (id 1)."""

licenses = sa.Table(
    "licenses",
    metadata,
    _id(),
    sa.Column("plan", sa.String(20), nullable=False),  # free, premium, ultimate
    sa.Column("licensee_name", sa.String(200), nullable=False),
    sa.Column("licensee_email", sa.String(200), nullable=False),
    sa.Column("licensee_company", sa.String(200), nullable=False),
    sa.Column("user_count", sa.Integer, nullable=False),
    sa.Column("starts_at", sa.Date, nullable=False),
    sa.Column("expires_at", sa.Date),
    sa.Column("trial", sa.Boolean, nullable=False),
    sa.Column("license_key", sa.String(200), nullable=False),
    _created(),
)
"""Uploaded licenses; the newest row is the current one."""

feature_flags = sa.Table(
    "usage_ping_feature_flags",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
)
"""The host's feature flags, where :meth:`usage_ping.events.FeatureFlags.from_table` reads them."""
