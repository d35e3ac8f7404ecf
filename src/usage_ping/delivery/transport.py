"""The transport: one payload POSTed to the central service, retried until it is acknowledged.

Policy of :meth:`Transport.send`:

- The body (already-serialized JSON) goes to ``{base_url}/usage_data`` as ``application/json``,
  gzip-compressed with ``Content-Encoding: gzip`` when it is larger than ``gzip_above`` bytes.
  Connecting and reading have separate time limits.
- An attempt succeeds only with a 2xx response whose JSON body carries a positive integer
  ``conv_index.usage_data_id`` (GitLab also accepts ``dev_ops_score.usage_data_id``, and so do
  we). A 2xx without one is a failed attempt, as in GitLab: the service did not confirm storing
  the ping.
- Retried: connection errors, timeouts, 5xx, 408, 429 and malformed 2xx responses. The central
  service deduplicates on ``(uuid, recorded_at)``, so a resend after a lost response is harmless.
- Never retried: any other status (400, 401, 403, 404, 413, 422, 3xx...). The same request would
  get the same answer, so :class:`SendError` is raised at once with ``retryable=False``, which
  tells the outbox not to hammer the service with that payload.
- Between attempts the transport sleeps ``random() * min(backoff_cap, backoff_base * 2**(n-1))``
  after attempt ``n`` (capped exponential backoff with full jitter, so instances that failed
  together do not retry together). A ``Retry-After`` header on a retried response, in seconds or
  as an HTTP date, replaces that delay, capped at ``retry_after_cap``. There is no sleep after
  the last attempt; after ``max_attempts`` :class:`SendError` is raised with ``retryable=True``.

Attempts are logged to the ``usage_ping`` logger; the payload never appears in a log line or an
error message. :meth:`Transport.report_error` and :meth:`Transport.post_metadata` are single
best-effort posts (as GitLab's ``/usage_ping_errors`` and ``/usage_ping_metadata``) that never
raise.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import random as _random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self

import httpx

from usage_ping import __version__
from usage_ping.errors import UsagePingError
from usage_ping.fallback import call_safely, logger
from usage_ping.payload.serialize import to_json

__all__ = ["Delivered", "SendError", "Transport", "backoff_ceiling", "backoff_delay"]

RETRY_STATUSES = frozenset({408, 429})
"""Statuses below 500 that are retried: the service asks to be tried again later."""

_SIDE_POST_TIMEOUT = 5.0
"""Upper bound (seconds) on connecting and reading for the best-effort error and metadata posts."""


class SendError(UsagePingError):
    """The payload was not delivered: raised by :meth:`Transport.send` once it gives up.

    Attributes:
        attempts: HTTP attempts made in this ``send()`` call.
        last_error: short reason of the last attempt: ``"HTTP 500"``, ``"ConnectTimeout"``,
            ``"malformed response: no conv_index.usage_data_id"``.
        retryable: False when the service refused the payload for good (a 4xx other than 408 and
            429): sending the same payload again would be refused again.
        status: the HTTP status of the last response, None if there was none.
    """

    def __init__(
        self, message: str, *, attempts: int, last_error: str, retryable: bool, status: int | None
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class Delivered:
    """The central service acknowledged the payload.

    Attributes:
        usage_data_id: the service's id of the stored ping (``conv_index.usage_data_id``), > 0.
        response: the whole JSON response body, with the DevOps score in ``conv_index``.
        attempts: HTTP attempts it took in this ``send()`` call.
        status: the HTTP status of the successful response.
    """

    usage_data_id: int
    response: dict[str, Any]
    attempts: int
    status: int


def backoff_ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The largest wait after failed attempt ``attempt`` (1-based): ``min(cap, base * 2**(n-1))``.

    Example:
        >>> [backoff_ceiling(n, base=1.0, cap=5.0) for n in (1, 2, 3, 4)]
        [1.0, 2.0, 4.0, 5.0]
    """
    # 2.0**1024 overflows; past 2**1023 any finite cap has long been reached (and a float
    # product that overflows is inf, which min() turns back into the cap).
    return min(cap, base * 2.0 ** min(attempt - 1, 1023))


def backoff_delay(attempt: int, *, base: float, cap: float, random: Callable[[], float]) -> float:
    """The wait after failed attempt ``attempt``: full jitter, ``random()`` times the ceiling.

    Example:
        >>> backoff_delay(3, base=1.0, cap=60.0, random=lambda: 0.5)
        2.0
    """
    return random() * backoff_ceiling(attempt, base=base, cap=cap)


def _retry_after(value: str | None, *, cap: float, now: Callable[[], float]) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), capped.

    None when the header is absent or unreadable: the computed backoff applies then.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": the RFC's way of saying UTC without a zone
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, when.timestamp() - now())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, cap)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes a few hundred milliseconds: one context serves every transport
    # of the process (it honours SSL_CERT_FILE and SSL_CERT_DIR as read the first time).
    return httpx.create_ssl_context()


def _usage_data_id(document: Any) -> tuple[int | None, str]:
    """The positive integer id the service gave the ping, or None and why the response is bad."""
    if not isinstance(document, dict):
        return None, "malformed response: not a JSON object"
    for block_name in ("conv_index", "dev_ops_score"):
        block = document.get(block_name)
        if isinstance(block, dict) and "usage_data_id" in block:
            value = block["usage_data_id"]
            # bool is an int in Python, and GitLab wants an Integer > 0, not "42" or 42.0.
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value, ""
            return None, "malformed response: conv_index.usage_data_id is not a positive integer"
    return None, "malformed response: no conv_index.usage_data_id"


class Transport:
    """Sends payloads to the central service over HTTP (see the module docstring for the policy).

    Args:
        base_url: the central service, e.g. ``"https://version.example.com"``; ``/usage_data``,
            ``/usage_ping_errors`` and ``/usage_ping_metadata`` are appended.
        connect_timeout: seconds to establish a connection.
        read_timeout: seconds to wait for the response (and for each write).
        max_attempts: HTTP attempts per :meth:`send` before it gives up.
        backoff_base: the ceiling of the first wait, doubled after each failed attempt.
        backoff_cap: the largest ceiling of a computed wait.
        retry_after_cap: the longest wait a ``Retry-After`` header can ask for.
        gzip_above: bodies longer than this many bytes are sent gzip-compressed.
        sleep: waits between attempts (injected in tests).
        random: a float in [0, 1) for the jitter (injected in tests).
        client: an ``httpx.Client`` to use (it is not closed by :meth:`close`); by default the
            transport makes its own, which honours the usual proxy environment variables.
        user_agent: the ``User-Agent`` header.

    Example:
        >>> with Transport("https://version.example.com") as transport:  # doctest: +SKIP
        ...     delivered = transport.send(to_json(payload).encode())
        ...     delivered.usage_data_id
        1234
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        retry_after_cap: float = 3600.0,
        gzip_above: int = 1024,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        client: httpx.Client | None = None,
        user_agent: str = f"usage-ping/{__version__}",
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("backoff_base", backoff_base),
            ("backoff_cap", backoff_cap),
            ("retry_after_cap", retry_after_cap),
        ):
            if not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_after_cap = retry_after_cap
        self.gzip_above = gzip_above
        self.timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._side_timeout = httpx.Timeout(
            min(read_timeout, _SIDE_POST_TIMEOUT), connect=min(connect_timeout, _SIDE_POST_TIMEOUT)
        )
        self._sleep = sleep
        self._random = random
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }
        self._owns_client = client is None
        if client is None:
            client = httpx.Client(follow_redirects=False, verify=_ssl_context())
        self._client = client

    # -- sending the payload ------------------------------------------------------------------

    def send(self, body: bytes) -> Delivered:
        """POST the payload to ``{base_url}/usage_data`` until the service acknowledges it.

        Args:
            body: the payload as UTF-8 JSON, exactly as it should arrive.

        Returns:
            The acknowledgement, with the ``usage_data_id`` and the DevOps score.

        Raises:
            SendError: the service refused the payload (``retryable=False``) or could not be
                reached with a valid answer in ``max_attempts`` attempts (``retryable=True``).
        """
        url = f"{self.base_url}/usage_data"
        headers = dict(self._headers)
        content = body
        if len(body) > self.gzip_above:
            # mtime=0: the same payload compresses to the same bytes on every attempt.
            content = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"

        for attempt in range(1, self.max_attempts + 1):
            status: int | None = None
            retry_after: float | None = None
            try:
                response = self._client.post(
                    url, content=content, headers=headers, timeout=self.timeout
                )
            except httpx.HTTPError as exc:
                # Timeouts, refused or reset connections, protocol and decoding errors: all worth
                # another try. The exception's text names the cause, never the request body.
                reason = type(exc).__name__
                detail = f"{reason} ({exc})" if str(exc) else reason
            else:
                status = response.status_code
                if response.is_success:
                    delivered, reason = self._acknowledgement(response, attempt)
                    if delivered is not None:
                        logger.info(
                            "usage_ping: payload delivered to %s (usage_data_id %d, HTTP %d, "
                            "attempt %d of %d)",
                            url,
                            delivered.usage_data_id,
                            status,
                            attempt,
                            self.max_attempts,
                        )
                        return delivered
                    detail = f"{reason} (HTTP {status})"
                else:
                    reason = detail = f"HTTP {status}"
                    if not (status >= 500 or status in RETRY_STATUSES):
                        if response.is_redirect:
                            detail += f" (redirect to {response.headers.get('Location')})"
                        logger.warning(
                            "usage_ping: %s refused the payload: %s; not retrying",
                            url,
                            detail,
                        )
                        raise SendError(
                            f"usage ping refused by {url}: {detail}",
                            attempts=attempt,
                            last_error=reason,
                            retryable=False,
                            status=status,
                        )
                retry_after = _retry_after(
                    response.headers.get("Retry-After"), cap=self.retry_after_cap, now=time.time
                )

            if attempt == self.max_attempts:
                logger.warning(
                    "usage_ping: sending to %s failed: %s; giving up after %d attempts",
                    url,
                    detail,
                    attempt,
                )
                raise SendError(
                    f"usage ping not delivered to {url} after {attempt} attempts: {detail}",
                    attempts=attempt,
                    last_error=reason,
                    retryable=True,
                    status=status,
                )
            delay = retry_after if retry_after is not None else self.delay(attempt)
            logger.warning(
                "usage_ping: attempt %d of %d to send to %s failed: %s; retrying in %.1f s%s",
                attempt,
                self.max_attempts,
                url,
                detail,
                delay,
                " (Retry-After)" if retry_after is not None else "",
            )
            self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def delay(self, attempt: int) -> float:
        """The computed wait after failed attempt ``attempt`` (1-based), without Retry-After."""
        return backoff_delay(
            attempt, base=self.backoff_base, cap=self.backoff_cap, random=self._random
        )

    @staticmethod
    def _acknowledgement(response: httpx.Response, attempt: int) -> tuple[Delivered | None, str]:
        try:
            document = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
            return None, "malformed response: not JSON"
        usage_data_id, reason = _usage_data_id(document)
        if usage_data_id is None:
            return None, reason
        delivered = Delivered(
            usage_data_id=usage_data_id,
            response=document,
            attempts=attempt,
            status=response.status_code,
        )
        return delivered, ""

    # -- best-effort side posts ---------------------------------------------------------------

    def report_error(self, error: Mapping[str, Any]) -> bool:
        """Tell the service that sending failed: one POST of ``{"error": error}``, never raises.

        Goes to ``{base_url}/usage_ping_errors`` with a short timeout, as GitLab does with
        ``{error: {time, uuid, hostname, version, message, elapsed}}``. Returns True if the service
        answered 2xx; False (logged) if it could not be reached or answered otherwise.
        """
        return self._post_once("usage_ping_errors", {"error": dict(error)})

    def post_metadata(self, metadata: Mapping[str, Any]) -> bool:
        """Send per-metric metadata: one POST of ``{"metadata": metadata}``, never raises.

        Goes to ``{base_url}/usage_ping_metadata`` with a short timeout, as GitLab does with
        ``{metadata: {uuid, metrics: [{name, time_elapsed, error}]}}``. Returns True on 2xx.
        """
        return self._post_once("usage_ping_metadata", {"metadata": dict(metadata)})

    def _post_once(self, path: str, document: dict[str, Any]) -> bool:
        url = f"{self.base_url}/{path}"

        def post() -> bool:
            content = to_json(document).encode()
            try:
                response = self._client.post(
                    url, content=content, headers=self._headers, timeout=self._side_timeout
                )
            except httpx.HTTPError as exc:
                logger.warning("usage_ping: POST %s failed: %s (%s)", url, type(exc).__name__, exc)
                return False
            if not response.is_success:
                logger.warning("usage_ping: POST %s answered HTTP %d", url, response.status_code)
                return False
            return True

        # Network failures are expected and handled above; anything else (a value that is not
        # JSON-serializable, a bug) goes through the fail-safe boundary, which tests make loud.
        return call_safely(post, fallback=False, description=f"POST {url}")

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections of the transport's own client (a client passed in stays open)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
