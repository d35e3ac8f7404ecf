"""Serving the central service with several uvicorn workers that share the load evenly.

uvicorn's own ``--workers`` hands every worker the same listening socket. Each worker's event loop
accepts all the connections waiting when it wakes up, so a burst of connections goes to one worker
and, with keep-alive, stays there: under the collector benchmark's 8 persistent clients one worker
did all the work while the other idled. Here each worker binds its own socket to the same address
with ``SO_REUSEPORT``, and the kernel spreads new connections across them. A supervisor starts the
workers, starts a worker again when one dies, and stops them all on SIGINT or SIGTERM.

Where ``SO_REUSEPORT`` is missing (not Linux or BSD), or with one worker, uvicorn serves as usual.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

__all__ = ["WorkerOptions", "bind_reuse_port", "serve"]

logger = logging.getLogger("uvicorn.error")

RESTART_PAUSE = 1.0
"""Seconds to wait before starting again a worker that died (one that dies at once loops)."""


@dataclass(frozen=True)
class WorkerOptions:
    """What each worker serves, and where."""

    app: str
    host: str = "127.0.0.1"
    port: int = 8000
    factory: bool = True
    log_level: str = "info"
    access_log: bool = True


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEPORT (not yet listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _exit_with(supervisor: int) -> None:
    """End this worker (SIGTERM: uvicorn's graceful stop) once the supervisor is gone, even if it
    was killed with SIGKILL and could not stop its workers: an orphan would keep the port."""

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="usage-ping-supervisor-watch", daemon=True).start()


def _worker(options: WorkerOptions, supervisor: int) -> None:  # pragma: no cover - a child
    _exit_with(supervisor)
    sock = bind_reuse_port(options.host, options.port)
    config = uvicorn.Config(
        options.app,
        factory=options.factory,
        log_level=options.log_level,
        access_log=options.access_log,
    )
    uvicorn.Server(config).run(sockets=[sock])


def serve(options: WorkerOptions, workers: int) -> None:
    """Serve ``options.app`` with ``workers`` processes until SIGINT or SIGTERM."""
    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(
            options.app,
            factory=options.factory,
            host=options.host,
            port=options.port,
            workers=workers,
            log_level=options.log_level,
            access_log=options.access_log,
        )
        return
    # Fail here, with the address, if the port is taken by anything that is not ours.
    bind_reuse_port(options.host, options.port).close()
    uvicorn.Config(options.app, log_level=options.log_level)  # sets up uvicorn's logging here too
    _Supervisor(options, workers).run()


class _Supervisor:
    def __init__(self, options: WorkerOptions, workers: int) -> None:
        self.options = options
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self.count = workers
        self.stopping = False

    def _start(self) -> BaseProcess:
        process = self.context.Process(
            target=_worker, args=(self.options, os.getpid()), daemon=False
        )
        process.start()
        return process

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            logger.info(
                "serving on http://%s:%d with %d workers (SO_REUSEPORT)",
                self.options.host,
                self.options.port,
                self.count,
            )
            self.processes = [self._start() for _ in range(self.count)]
            while not self.stopping:
                time.sleep(0.2)
                for index, process in enumerate(self.processes):
                    if process.is_alive() or self.stopping:
                        continue
                    logger.error(
                        "worker %s exited with %s; starting another", process.pid, process.exitcode
                    )
                    time.sleep(RESTART_PAUSE)
                    self.processes[index] = self._start()
        finally:
            for process in self.processes:
                if process.is_alive() and process.pid is not None:
                    # SIGTERM: uvicorn's graceful shutdown (open requests finish, then it exits).
                    process.terminate()
            for process in self.processes:
                process.join(30)
                if process.is_alive():
                    process.kill()
                    process.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
