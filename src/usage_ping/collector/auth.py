"""Operator login for the service's dashboards: scrypt password hashes, signed session cookies,
CSRF tokens on every form, and a per-address limit on failed logins.

Operators are configured as ``name: hash`` pairs (``operators`` in the service configuration);
``usage-ping service hash-password`` prints a hash made by :func:`hash_password`::

    >>> stored = hash_password("correct horse battery staple")
    >>> stored.startswith("scrypt$32768$8$1$")
    True
    >>> verify_password("correct horse battery staple", stored)
    True

A session is a cookie signed with the service's ``secret_key`` (itsdangerous): the operator's
name, the session's CSRF token and a fingerprint of the operator's password hash, so changing an
operator's password (or removing the operator) ends their sessions. Sessions are stateless: a
logout deletes the cookie in the browser, and a copied cookie stays valid until it expires
(12 hours by default).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "CSRF_COOKIE",
    "MAX_CONCURRENT_HASHES",
    "SESSION_COOKIE",
    "LoginThrottle",
    "OperatorAuth",
    "Session",
    "hash_password",
    "local_path",
    "new_token",
    "tokens_match",
    "verify_password",
]

logger = logging.getLogger("usage_ping")

SCRYPT_N = 2**15
"""scrypt's CPU/memory cost: 32 MiB and about 0.1 to 0.4 s per hash."""
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_MAX_MEMORY = 256 * 1024 * 1024
"""Stored hashes asking for more memory than this are refused rather than computed."""

MAX_CONCURRENT_HASHES = 4
"""Password checks running at once per process (the others wait)."""

SESSION_COOKIE = "usage_ping_session"
CSRF_COOKIE = "usage_ping_csrf"
"""The token of the login form, before there is a session (double-submit)."""
SESSION_MAX_AGE = 12 * 3600


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_MAX_MEMORY + 1024 * 1024,
        dklen=_KEY_BYTES,
    )


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash with its parameters: ``scrypt$n$r$p$salt$hash`` (base64 parts).

    Args:
        password: the operator's password (any non-empty string).
        n, r, p: scrypt's parameters; the defaults suit a login (lower ``n`` only in tests).

    Raises:
        ValueError: an empty password, or parameters scrypt refuses.
    """
    if not password:
        raise ValueError("the password is empty")
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * n * r * p > _MAX_MEMORY:
        raise ValueError(f"bad scrypt parameters n={n} r={r} p={p}")
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(password, salt, n, r, p)
    encoded = [base64.b64encode(part).decode() for part in (salt, key)]
    return "$".join(["scrypt", str(n), str(r), str(p), *encoded])


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return None
    n, r, p = (int(x) for x in parts[1:4])
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * n * r * p > _MAX_MEMORY:
        return None
    try:
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not salt or not key:
        return None
    return n, r, p, salt, key


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password` (constant-time compare).

    A malformed stored hash never matches (it is not an error: the login simply fails).
    """
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, key = parsed
    try:
        computed = hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEMORY + 1024 * 1024,
            dklen=len(key),
        )  # fmt: skip
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(computed, key)


def local_path(target: str | None, default: str = "/dashboard") -> str:
    """``target`` if it is a path on this site (``/dashboard?x=1``), else ``default``.

    Refuses absolute URLs, scheme-relative ``//host`` and ``/\\host`` (which browsers read as
    ``//host``), and control characters: a login link cannot send the operator elsewhere.
    """
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if "\\" in target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


class LoginThrottle:
    """Failed logins per client address: at most ``max_failures`` within ``window`` seconds.

    In memory and per process (each uvicorn worker counts on its own), which is enough to make
    guessing a password by brute force hopeless against scrypt hashes.
    """

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 15 * 60,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 100_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[address]
        return times

    def retry_after(self, address: str) -> float:
        """0 if ``address`` may try to log in, else the seconds until it may."""
        now = self.clock()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self.max_failures:
                return 0.0
            return max(1.0, self.window - (now - times[0]))

    def failed(self, address: str) -> None:
        """Count a failed login from ``address``."""
        now = self.clock()
        with self._lock:
            times = self._recent(address, now)
            self._failures[address] = times
            times.append(now)
            if len(self._failures) > self.max_addresses:  # forget addresses whose window ended
                for key in list(self._failures):
                    self._recent(key, now)

    def succeeded(self, address: str) -> None:
        """Forget the failures of ``address`` (it logged in)."""
        with self._lock:
            self._failures.pop(address, None)


@dataclass(frozen=True)
class Session:
    """A logged-in operator and the CSRF token of their forms."""

    operator: str
    csrf: str


def new_token() -> str:
    """A random CSRF token."""
    return secrets.token_urlsafe(32)


def tokens_match(sent: str | None, expected: str | None) -> bool:
    """Whether a form's CSRF token is the expected one (constant-time compare)."""
    if not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())


def _fingerprint(stored_hash: str) -> str:
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:16]


class OperatorAuth:
    """Checks operators' passwords and issues and reads their session cookies.

    Args:
        operators: operator name -> password hash (:func:`hash_password`).
        secret_key: signs the cookies; None makes a random key for this process (sessions then end
            when the process restarts and are not shared between workers; a warning says so).
        max_age: seconds a session lasts.
    """

    def __init__(
        self,
        operators: Mapping[str, str],
        secret_key: str | None,
        *,
        max_age: int = SESSION_MAX_AGE,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.operators = dict(operators)
        self.max_age = max_age
        self.throttle = throttle or LoginThrottle()
        if secret_key is None:
            secret_key = secrets.token_urlsafe(32)
            if self.operators:
                logger.warning(
                    "no secret_key in the service configuration: dashboard sessions use a random "
                    "key, so they end when the process restarts and are not shared by workers"
                )
        self._serializer = URLSafeTimedSerializer(secret_key, salt="usage-ping-session")
        self._dummy: str | None = None
        self._hashing = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)

    @property
    def enabled(self) -> bool:
        """Whether any operator is configured (without one the dashboards are refused)."""
        return bool(self.operators)

    def authenticate(self, name: str, password: str) -> bool:
        """Whether ``name`` is an operator and ``password`` is theirs.

        An unknown name costs the same scrypt work as a known one, so response times do not tell
        which names exist. At most ``MAX_CONCURRENT_HASHES`` run at once: each takes 32 MiB, and a
        burst of logins must not take the service's memory.
        """
        with self._hashing:
            stored = self.operators.get(name)
            if stored is None:
                if self._dummy is None:
                    some = next(iter(self.operators.values()), "")
                    parsed = _parse(some)
                    n, r, p = parsed[:3] if parsed else (SCRYPT_N, SCRYPT_R, SCRYPT_P)
                    self._dummy = hash_password(secrets.token_urlsafe(16), n=n, r=r, p=p)
                verify_password(password, self._dummy)
                return False
            return verify_password(password, stored)

    def issue(self, operator: str) -> tuple[str, Session]:
        """A signed cookie value for a new session of ``operator``, and the session."""
        session = Session(operator, new_token())
        value = self._serializer.dumps(
            {"o": operator, "c": session.csrf, "p": _fingerprint(self.operators[operator])}
        )
        return value, session

    def session(self, cookie: str | None) -> Session | None:
        """The session a cookie carries; None when missing, forged, expired or out of date."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is a BadSignature
            return None
        if not isinstance(data, dict):
            return None
        operator, csrf, fingerprint = data.get("o"), data.get("c"), data.get("p")
        if not isinstance(operator, str) or not isinstance(csrf, str):
            return None
        stored = self.operators.get(operator)
        if stored is None or fingerprint != _fingerprint(stored):
            return None  # the operator was removed or their password changed
        return Session(operator, csrf)

    def request_session(self, request: Request) -> Session | None:
        """The session of a request, from its cookie."""
        return self.session(request.cookies.get(SESSION_COOKIE))

    def set_session(self, response: Response, request: Request, cookie: str) -> None:
        """Set the session cookie: HttpOnly, SameSite=Lax, Secure over HTTPS, expiring."""
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=self.max_age,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
        response.delete_cookie(CSRF_COOKIE, path="/")

    @staticmethod
    def clear_session(response: Response) -> None:
        """Delete the session cookie (logout)."""
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")

    @staticmethod
    def login_token(request: Request) -> tuple[str, bool]:
        """The login form's CSRF token: the cookie's, or a new one (True: set the cookie)."""
        current = request.cookies.get(CSRF_COOKIE)
        if current and 20 <= len(current) <= 100 and current.isascii():
            return current, False
        return new_token(), True

    @staticmethod
    def set_login_token(response: Response, request: Request, token: str) -> None:
        """Set the login form's CSRF cookie (HttpOnly: the form carries the token itself)."""
        response.set_cookie(
            CSRF_COOKIE,
            token,
            max_age=3600,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
