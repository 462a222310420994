"""Run the real FastAPI app with uvicorn in a thread, on a free port, for tests and benches."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx
import uvicorn

from api.app import create_app
from api.client import LayerwiseClient
from services.settings import Settings
from tests.utils.settings import local_settings
from tests.utils.waiting import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    def __init__(self, settings: Settings, *, dispatcher: bool = True):
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dispatcher = dispatcher
        self.app = create_app(settings, dispatcher=dispatcher)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        if self._dispatcher:
            # Ray ties its node processes (GCS, raylet) to the thread that started them: the
            # dispatcher would start them in the server's thread, and they died with it,
            # leaving this process's Ray client spinning a core in its error listener.
            from workers.runtime.dispatcher import ensure_ray

            ensure_ray(self.settings)
        self._thread.start()

        def started() -> bool:
            assert self._thread.is_alive(), "the test server's thread ended before it started"
            return self._server.started

        wait_until(started, 120, "the test server to start", every=0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def client(self, token: str | None = None) -> LayerwiseClient:
        return LayerwiseClient(self.url, token=token)

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    @property
    def dispatcher(self):  # noqa: ANN201
        return self.app.state.dispatcher


def two_owners(home: Path, alice: str, bob: str) -> ServerThread:
    """The real app without a dispatcher, whose tokens are `alice`'s and `bob`'s: the owners
    whose boundary a test tries."""
    return ServerThread(local_settings(home, api_tokens=f"alice:{alice},bob:{bob}"),
                        dispatcher=False)
