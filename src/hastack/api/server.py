"""The API server of one controller: uvicorn on its own thread, started and stopped with the
controller; it advertises its URL in the store whenever this controller starts leading."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import uvicorn

from hastack.agent.protocol import parse_address
from hastack.api.app import create_app
from hastack.api.auth import Authenticator, TokenCheck
from hastack.api.service import Service
from hastack.config import Config
from hastack.engine.engine import Engine, TickReport
from hastack.errors import ConfigError, HastackError
from hastack.observability.metrics import Metrics
from hastack.ports.store import Store

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        store: Store,
        *,
        keystone: TokenCheck | None = None,
    ) -> None:
        listen = config.api.listen
        assert listen is not None
        host, port = parse_address(listen, 7480)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise ConfigError(f"api.listen {listen}: cannot listen: {exc}") from None
        self._sock.listen(128)
        bound = self._sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        if host in ("0.0.0.0", "::"):
            shown = socket.getfqdn()
        tls = config.api.tls
        scheme = "https" if tls else "http"
        self.url = config.api.advertise or f"{scheme}://{shown}:{bound}"
        self.service = Service(
            engine, store, controller=config.controller.name, profile=config.profile
        )
        self.metrics = Metrics(engine)
        engine.listeners.append(self.metrics.listener)
        self.app = create_app(
            self.service,
            Authenticator(config.api, keystone),
            self.metrics.render,
            verify=(tls.ca_file or True) if tls else True,
        )
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                ssl_certfile=tls.cert_file if tls else None,
                ssl_keyfile=tls.key_file if tls else None,
            )
        )
        self._thread: threading.Thread | None = None
        self._advertised: int | None = None
        engine.listeners.append(self._on_tick)

    def start(self) -> ApiServer:
        self._thread = threading.Thread(target=self._run, name="hastack-api", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def _on_tick(self, report: TickReport) -> None:
        epoch = self.service.view.epoch
        if not report.leader or epoch is None or epoch == self._advertised:
            return
        try:
            self.service.advertise(self.url)
            self._advertised = epoch
        except HastackError as exc:
            log.warning("could not advertise the API address: %s", exc)

    def close(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()
