"""A fake central service on loopback for delivery tests: scripted failures, then a versions app.

:class:`PingServer` is a real HTTP server on ``127.0.0.1`` (an ephemeral port by default) serving
from a background thread. Requests to ``POST /usage_data`` first play a script of responses in
order, then get the default behaviour, a small "versions app": it decodes gzip, parses the JSON,
requires ``uuid`` and ``recorded_at``, stores each distinct ping once (a resend of the same
``(uuid, recorded_at)`` gets the same ``usage_data_id`` and response) and answers 201 with a
``conv_index`` block. ``POST /usage_ping_errors`` and ``/usage_ping_metadata`` are recorded and
answered 201 (they have scripts of their own, empty unless a test plays one).

Example::

    with PingServer() as server:
        server.play(Fail(500), Fail(429, headers={"Retry-After": "2"}), Hang(1.0), Malformed())
        transport = Transport(server.url, sleep=lambda _: None)
        ...
        assert len(server.pings) == 1

``server.down()`` closes the listening socket, keeping the port reserved, so that connections are
refused (as when the service is stopped) until ``server.up()`` listens again on the same port.

Run it as its own process with ``python -m tests.delivery.http_server --port N`` (from the
repository root; ``--port 0`` picks a free port): it prints the port on the first line of stdout,
then takes JSON commands on stdin, one per line, and answers each with one JSON line. It stops
when stdin closes, so it never outlives the test that started it. :class:`ServerProcess` drives
it with the same methods as :class:`PingServer`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, cast
from urllib.parse import urlsplit

__all__ = [
    "CONV_INDEX_SCORES",
    "Down",
    "Fail",
    "Hang",
    "Malformed",
    "PingServer",
    "RecordedRequest",
    "ServerProcess",
    "Step",
    "step_from_json",
    "step_to_json",
]

PINGS_PATH = "/usage_data"
SIDE_PATHS = ("/usage_ping_errors", "/usage_ping_metadata")
REPO_ROOT = Path(__file__).resolve().parents[2]
_MODULE_COMMAND = (sys.executable, "-m", "tests.delivery.http_server")

CONV_INDEX_SCORES: dict[str, float] = {
    "leader_issues": 9.1,
    "instance_issues": 4.5,
    "percentage_issues": 49.5,
    "leader_notes": 30.2,
    "instance_notes": 30.2,
    "percentage_notes": 100.0,
    "leader_merge_requests": 4.0,
    "instance_merge_requests": 1.0,
    "percentage_merge_requests": 25.0,
}
"""The score features of every ``conv_index`` the fake versions app returns (fixed values)."""


# -- the script -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fail:
    """Answer with ``status`` (and these headers and body) instead of storing the ping."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"error": "scripted failure"}'


@dataclass(frozen=True)
class Hang:
    """Read the request, wait ``seconds``, then answer with ``then`` (None: the default behaviour).

    A client that timed out meanwhile has gone, but the ping is still stored after the wait, as a
    slow real service would; :meth:`PingServer.stop` ends the wait at once (nothing is stored).
    """

    seconds: float
    then: Step | None = None


@dataclass(frozen=True)
class Malformed:
    """Answer 2xx with a body that is not a valid acknowledgement (HTML by default)."""

    body: str = "<html><body>502 upstream went away</body></html>"
    status: int = 200
    content_type: str = "text/html"


@dataclass(frozen=True)
class Down:
    """This attempt finds the service down: the connection is reset without any response.

    Counted per request, so ``play(Down(), Down())`` is "down for two attempts, then up". The
    client sees a reset connection (``httpx.ReadError`` or ``RemoteProtocolError``); for a port
    that refuses connections outright, use :meth:`PingServer.down` and :meth:`PingServer.up`.
    """


Step = Fail | Hang | Malformed | Down

_STEP_TYPES: dict[str, type[Fail] | type[Hang] | type[Malformed] | type[Down]] = {
    "fail": Fail,
    "hang": Hang,
    "malformed": Malformed,
    "down": Down,
}


def step_to_json(step: Step) -> dict[str, Any]:
    """A step as a JSON object, e.g. ``{"type": "fail", "status": 500, ...}``."""
    data: dict[str, Any] = {"type": type(step).__name__.lower()}
    for item in fields(step):
        value = getattr(step, item.name)
        data[item.name] = step_to_json(value) if isinstance(value, Step) else value
    return data


def step_from_json(data: dict[str, Any]) -> Step:
    """The step a :func:`step_to_json` object describes."""
    arguments = dict(data)
    kind = _STEP_TYPES[arguments.pop("type")]
    if isinstance(arguments.get("then"), dict):
        arguments["then"] = step_from_json(arguments["then"])
    return kind(**arguments)


# -- what the server saw ----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it.

    ``headers`` has lower-case names; ``body`` is gunzipped when ``Content-Encoding`` says gzip
    (``raw_body`` is what came over the wire); ``json`` is the parsed body, or None if it is not
    JSON; ``step`` says how it was answered: ``"default"`` or the scripted step.
    """

    method: str
    path: str
    headers: dict[str, str]
    raw_body: bytes
    body: bytes
    json: Any
    step: str

    def to_json(self) -> dict[str, Any]:
        """This request as a JSON object (bodies as text)."""
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "raw_body": self.raw_body.decode("latin-1"),
            "body": self.body.decode("utf-8", "replace"),
            "json": self.json,
            "step": self.step,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordedRequest:
        """The request that :meth:`to_json` described."""
        return cls(
            method=data["method"],
            path=data["path"],
            headers=data["headers"],
            raw_body=data["raw_body"].encode("latin-1"),
            body=data["body"].encode(),
            json=data["json"],
            step=data["step"],
        )


# -- the server -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a scripted step is also one connection attempt.
    protocol_version = "HTTP/1.0"
    timeout = 10  # a client that stops sending mid-request does not hold a thread for long

    def do_POST(self) -> None:
        cast(_HTTPServer, self.server).owner._handle(self)

    def do_GET(self) -> None:
        self.send_error(405)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read :attr:`PingServer.requests` instead."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: PingServer) -> None:
        self.owner = owner
        self.handler_threads: list[threading.Thread] = []
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Like ThreadingMixIn, but the threads are kept so that stop() can wait for them.
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        self.handler_threads = [t for t in self.handler_threads if t.is_alive()]
        self.handler_threads.append(thread)
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # a client that went away (timed out, reset)
            return
        super().handle_error(request, client_address)


class PingServer:
    """A fake central service on ``127.0.0.1``, serving from a background thread (see the module).

    Args:
        port: the port to listen on; 0 picks a free one (read it back from :attr:`port`).
        script: steps to play for ``POST /usage_data`` before the default behaviour.

    Every accessor is thread-safe and returns a copy.
    """

    def __init__(self, port: int = 0, *, script: Iterable[Step] = ()) -> None:
        self._lock = threading.Condition()
        self._scripts: dict[str, deque[Step]] = {PINGS_PATH: deque(script)}
        self._requests: list[RecordedRequest] = []
        self._responses: dict[tuple[str, str], dict[str, Any]] = {}
        self._pings: list[dict[str, Any]] = []
        self._side_posts: dict[str, list[Any]] = {path: [] for path in SIDE_PATHS}
        self._stopping = threading.Event()
        self._mode_lock = threading.Lock()
        self._reserve: socket.socket | None = None
        self._serving: threading.Thread | None = None
        self._httpd = _HTTPServer(("127.0.0.1", port), self)
        self.port: int = self._httpd.server_address[1]
        self._serve()

    @property
    def url(self) -> str:
        """The base URL to give the transport, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    # -- control ------------------------------------------------------------------------------

    def play(self, *steps: Step, path: str = PINGS_PATH) -> None:
        """Queue steps for the next requests to ``path``; after them, the default behaviour."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(steps)

    def pending(self, path: str = PINGS_PATH) -> list[Step]:
        """The steps not played yet for ``path``."""
        with self._lock:
            return list(self._scripts.get(path, ()))

    @property
    def is_down(self) -> bool:
        """Whether the port refuses connections (after :meth:`down`)."""
        return self._reserve is not None

    def down(self) -> None:
        """Refuse connections: stop listening, but keep the port bound so :meth:`up` gets it back.

        Requests already being handled (a :class:`Hang`) carry on.
        """
        with self._mode_lock:
            if self._reserve is not None or self._stopping.is_set():
                return
            self._stop_serving()
            self._httpd.socket.close()
            # Bound but not listening: the kernel refuses connections, and no one else can take
            # the port meanwhile.
            reserve = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reserve.bind(("127.0.0.1", self.port))
            self._reserve = reserve

    def up(self) -> None:
        """Accept connections again, on the same port."""
        with self._mode_lock:
            if self._reserve is None or self._stopping.is_set():
                return
            self._reserve.listen(self._httpd.request_queue_size)
            self._httpd.socket = self._reserve
            self._reserve = None
            self._serve()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, end any :class:`Hang`, close the port and wait for handler threads."""
        with self._mode_lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            self._stop_serving()
            self._httpd.server_close()
            if self._reserve is not None:
                self._reserve.close()
                self._reserve = None
        deadline = time.monotonic() + timeout
        for thread in list(self._httpd.handler_threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        self._serving = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"ping-server-{self.port}",
            daemon=True,
        )
        self._serving.start()

    def _stop_serving(self) -> None:
        if self._serving is not None:
            self._httpd.shutdown()
            self._serving.join()
            self._serving = None

    # -- what it saw --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order (including failed and scripted ones)."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str = PINGS_PATH) -> list[RecordedRequest]:
        """The requests received for ``path``."""
        return [request for request in self.requests if request.path == path]

    @property
    def pings(self) -> list[dict[str, Any]]:
        """The distinct pings stored, in the order of their ``usage_data_id`` (1, 2, ...)."""
        with self._lock:
            return list(self._pings)

    @property
    def errors(self) -> list[Any]:
        """The JSON bodies posted to ``/usage_ping_errors``."""
        with self._lock:
            return list(self._side_posts["/usage_ping_errors"])

    @property
    def metadata(self) -> list[Any]:
        """The JSON bodies posted to ``/usage_ping_metadata``."""
        with self._lock:
            return list(self._side_posts["/usage_ping_metadata"])

    def wait_until(self, condition: Callable[[PingServer], bool], timeout: float = 5.0) -> bool:
        """Wait until ``condition(self)`` holds (checked after each request); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    # -- handling a request (in a handler thread) ---------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        headers = {name.lower(): value for name, value in handler.headers.items()}
        raw = handler.rfile.read(int(headers.get("content-length") or 0))
        body: bytes | None = raw
        if headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(raw)
            except (OSError, EOFError):
                body = None
        document: Any = None
        if body is not None:
            try:
                document = json.loads(body)
            except ValueError:
                document = None
        with self._lock:
            script = self._scripts.get(path)
            step = script.popleft() if script else None
            self._requests.append(
                RecordedRequest(
                    method=handler.command,
                    path=path,
                    headers=headers,
                    raw_body=raw,
                    body=body if body is not None else b"",
                    json=document,
                    step="default" if step is None else repr(step),
                )
            )
            self._lock.notify_all()
        self._answer(handler, step, path, body, document)

    def _answer(
        self, handler: _Handler, step: Step | None, path: str, body: bytes | None, document: Any
    ) -> None:
        if isinstance(step, Hang):
            if self._stopping.wait(step.seconds):
                _reset(handler)
                return
            step = step.then
        if isinstance(step, Down):
            _reset(handler)
        elif isinstance(step, Fail):
            _respond(handler, step.status, step.body.encode(), headers=step.headers)
        elif isinstance(step, Malformed):
            _respond(handler, step.status, step.body.encode(), content_type=step.content_type)
        elif isinstance(step, Hang):  # Hang(then=Hang(...)): wait again
            self._answer(handler, step, path, body, document)
        else:
            status, answer = self._versions_app(path, body, document)
            _respond(handler, status, json.dumps(answer).encode())

    def _versions_app(self, path: str, body: bytes | None, document: Any) -> tuple[int, Any]:
        if path not in (PINGS_PATH, *SIDE_PATHS):
            return 404, {"error": f"no route for {path}"}
        if body is None:
            return 400, {"error": "body is not valid gzip"}
        if document is None:
            return 400, {"error": "body is not JSON"}
        if path in SIDE_PATHS:
            with self._lock:
                self._side_posts[path].append(document)
                self._lock.notify_all()
            return 201, {}
        return self._store_ping(document)

    def _store_ping(self, document: Any) -> tuple[int, Any]:
        if not isinstance(document, dict):
            return 422, {"error": "the payload must be a JSON object"}
        uuid, recorded_at = document.get("uuid"), document.get("recorded_at")
        if not (isinstance(uuid, str) and uuid and isinstance(recorded_at, str) and recorded_at):
            return 422, {"error": "uuid and recorded_at are required"}
        with self._lock:
            response = self._responses.get((uuid, recorded_at))
            if response is None:  # a resend of a stored ping gets the same id and response
                self._pings.append(document)
                response = {"conv_index": {"usage_data_id": len(self._pings), **CONV_INDEX_SCORES}}
                self._responses[uuid, recorded_at] = response
                self._lock.notify_all()
        return 201, response


def _respond(
    handler: _Handler,
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def _reset(handler: _Handler) -> None:
    """Drop the connection with a TCP reset, as a crashed or unreachable service would."""
    handler.close_connection = True
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()


# -- as its own process -----------------------------------------------------------------------


def _command(server: PingServer, command: dict[str, Any]) -> dict[str, Any]:
    name = command["cmd"]
    if name == "play":
        steps = [step_from_json(step) for step in command["steps"]]
        server.play(*steps, path=command.get("path", PINGS_PATH))
    elif name == "down":
        server.down()
    elif name == "up":
        server.up()
    elif name == "state":
        return {
            "ok": True,
            "requests": [request.to_json() for request in server.requests],
            "pings": server.pings,
            "errors": server.errors,
            "metadata": server.metadata,
            "is_down": server.is_down,
        }
    elif name != "stop":
        raise ValueError(f"unknown command {name!r}")
    return {"ok": True}


def main(argv: Sequence[str] | None = None) -> int:
    """Serve on ``--port`` (0: a free one), print the port, obey JSON commands on stdin.

    Commands: ``{"cmd": "play", "steps": [{"type": "fail", "status": 500}], "path": ...}``,
    ``{"cmd": "down"}``, ``{"cmd": "up"}``, ``{"cmd": "state"}`` (requests, pings, errors,
    metadata), ``{"cmd": "stop"}``. Each is answered with one JSON line.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.delivery.http_server")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--script", default="[]", help="JSON list of steps to play first")
    args = parser.parse_args(argv)
    script = [step_from_json(step) for step in json.loads(args.script)]
    with PingServer(args.port, script=script) as server:
        print(server.port, flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                command = json.loads(line)
                answer = _command(server, command)
            except Exception as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                command = {}
            print(json.dumps(answer), flush=True)
            if command.get("cmd") == "stop":
                break
    return 0


class ServerProcess:
    """A :class:`PingServer` in its own OS process, driven over its stdin and stdout.

    Same methods as :class:`PingServer` (``url``, ``play``, ``down``, ``up``, ``requests``,
    ``pings``, ``errors``, ``metadata``, ``stop``), plus :meth:`kill`, which ends the process
    abruptly (the port then refuses connections; a new ``ServerProcess(port=...)`` can take it,
    with empty state).
    """

    def __init__(self, port: int = 0, *, script: Iterable[Step] = ()) -> None:
        steps = json.dumps([step_to_json(step) for step in script])
        self._process = subprocess.Popen(
            [*_MODULE_COMMAND, "--port", str(port), "--script", steps],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        first = self._stdout.readline()
        if not first.strip().isdigit():
            self._process.kill()
            self._process.wait()
            self._close_pipes()
            raise RuntimeError(f"the ping server process did not start (it printed {first!r})")
        self.port = int(first)

    @property
    def pid(self) -> int:
        """The server process's id."""
        return self._process.pid

    @property
    def url(self) -> str:
        """The base URL to give the transport."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def _stdin(self) -> IO[str]:
        assert self._process.stdin is not None
        return self._process.stdin

    @property
    def _stdout(self) -> IO[str]:
        assert self._process.stdout is not None
        return self._process.stdout

    def _call(self, command: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._stdin.write(json.dumps(command) + "\n")
            self._stdin.flush()
            answer: dict[str, Any] = json.loads(self._stdout.readline())
        if not answer.get("ok"):
            raise RuntimeError(f"ping server process: {answer.get('error')}")
        return answer

    def play(self, *steps: Step, path: str = PINGS_PATH) -> None:
        """Queue steps for the next requests to ``path``."""
        self._call({"cmd": "play", "steps": [step_to_json(s) for s in steps], "path": path})

    def down(self) -> None:
        """Refuse connections, keeping the port."""
        self._call({"cmd": "down"})

    def up(self) -> None:
        """Accept connections again on the same port."""
        self._call({"cmd": "up"})

    def state(self) -> dict[str, Any]:
        """Everything the server saw, in one round trip."""
        return self._call({"cmd": "state"})

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order."""
        return [RecordedRequest.from_json(r) for r in self.state()["requests"]]

    @property
    def pings(self) -> list[dict[str, Any]]:
        """The distinct pings stored."""
        return cast(list[dict[str, Any]], self.state()["pings"])

    @property
    def errors(self) -> list[Any]:
        """The bodies posted to ``/usage_ping_errors``."""
        return cast(list[Any], self.state()["errors"])

    @property
    def metadata(self) -> list[Any]:
        """The bodies posted to ``/usage_ping_metadata``."""
        return cast(list[Any], self.state()["metadata"])

    def kill(self) -> None:
        """End the process at once (SIGKILL), as a crash would."""
        self._process.kill()
        self._process.wait()
        self._close_pipes()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and wait for the process to exit."""
        if self._process.poll() is None:
            try:
                self._call({"cmd": "stop"})
                self._process.wait(timeout)
            except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
