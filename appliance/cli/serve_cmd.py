"""`shifu serve`: the engine over HTTP (uvicorn), for kiosks on other terminals and the MES.

Loopback only unless configured: listening on any other address needs `serve.token`
(`SHIFU_SERVE__TOKEN`), and the server refuses to start without one. FastAPI and uvicorn
are imported only when the server really starts.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from kb.errors import ConfigError


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; any other name or address counts as the network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str) -> None:
    """Refuse to listen beyond this PC without a bearer token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to listen on {host} without a token: set serve.token in shifu.toml "
            "(or SHIFU_SERVE__TOKEN), or listen on 127.0.0.1"
        )


def register(cli: click.Group) -> None:
    @cli.command("serve")
    @click.option("--host", default=None, metavar="H", help="Address to listen on (default serve.host, 127.0.0.1).")
    @click.option("--port", default=None, type=click.IntRange(1, 65535), metavar="P",
                  help="TCP port (default serve.port, 8765).")
    @click.option("--debug-tokens", is_flag=True,
                  help="Also send the model's raw tokens as SSE `token` events (debugging only; unguarded).")
    def serve(host: str | None, port: int | None, debug_tokens: bool) -> None:
        """The engine over local HTTP: POST /v1/ask, codes, alarms, feedback; OpenAPI at /openapi.json."""
        from appliance.cli.main import settings

        config: Any = settings()
        host = host or config.serve.host
        port = port or config.serve.port
        check_bind(host, config.serve.token)
        import uvicorn

        from appliance.engine.factory import make_engine
        from appliance.server.app import make_server_app

        engine = make_engine(config)
        app = make_server_app(config, engine, debug_tokens=debug_tokens)
        click.echo(f"shifu serve: http://{host}:{port} (OpenAPI at /openapi.json)", err=True)
        try:
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        finally:
            engine.close()
