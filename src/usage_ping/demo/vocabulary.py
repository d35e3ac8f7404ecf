"""Words the generated rows are made of: names, nouns, titles and comments."""

from __future__ import annotations

from usage_ping.demo.columns import objects

__all__ = ["FIRST", "LAST", "NOUNS", "SENTENCES", "TOPICS", "VERBS"]

_FIRST = (
    "alex sam kim jo lee max ana eva ivan omar li mia noah zoe yuki ravi lena tom ada nils ines "
    "paul rosa tariq uma vera wei yara emil hana"
)
_LAST = (
    "smith garcia chen mueller rossi novak silva kowalski tanaka okafor dubois jensen larsen "
    "moreau kumar haddad ivanova costa nguyen berg"
)
_NOUNS = (
    "api gateway billing search auth cache scheduler runner dashboard exporter parser importer "
    "mailer storage frontend backend pipeline registry monitor website"
)

FIRST = objects(_FIRST.split())
LAST = objects(_LAST.split())
NOUNS = objects(_NOUNS.split())
VERBS = objects([
    "Fix", "Add", "Improve", "Remove", "Refactor", "Document", "Speed up", "Investigate",
    "Support", "Migrate",
])  # fmt: skip
TOPICS = objects([
    "login timeout", "flaky test", "memory leak", "dark mode", "CSV export", "rate limiting",
    "error page", "slow query", "pagination", "webhook retries", "audit log", "time zones",
    "file upload", "search ranking", "keyboard shortcuts", "email digest",
])  # fmt: skip
SENTENCES = objects([
    "Looks good to me.",
    "Can we add a test for this?",
    "I can reproduce it on main.",
    "This should be fixed by the last merge request.",
    "Assigned to the next milestone.",
    "Please rebase.",
    "Thanks, merging once the pipeline passes.",
    "Could you share the logs?",
    "Closing as a duplicate.",
    "The staging deployment works now.",
    "Let's discuss this in the weekly sync.",
    "changed the description",
    "added the bug label",
    "mentioned in a commit",
])  # fmt: skip
