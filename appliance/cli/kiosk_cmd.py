"""`shifu kiosk`: the operator's screen; `shifu kiosk set-pin`: the technician PIN.

Kiosk mode (Ctrl+C/Q/Z/\\ do not leave) comes from `kiosk.kiosk_mode`, is on by default
when systemd starts the kiosk (it sets INVOCATION_ID), and can be forced with --kiosk or
--no-kiosk. Textual is imported only when the screen really starts.

`--engine URL` runs the kiosk as a thin client of `shifu serve` on another PC (or the
same one): questions, feedback, alarms and the status all go over HTTP
(`appliance.engine.remote`); the token is `--token`, or `serve.token` from the config.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, cast

import click


def _kiosk_mode(flag: bool | None, configured: bool) -> bool:
    if flag is not None:
        return flag
    return configured or bool(os.environ.get("INVOCATION_ID"))


def _ignore_terminal_signals() -> None:
    """Belt and braces: if the terminal still sends SIGINT/SIGQUIT/SIGTSTP, they do nothing."""
    for name in ("SIGINT", "SIGQUIT", "SIGTSTP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)


def register(cli: click.Group) -> None:
    @cli.group("kiosk", invoke_without_command=True)
    @click.option(
        "--engine",
        "engine_url",
        default=None,
        metavar="URL",
        help="Use the engine of `shifu serve` at URL (e.g. http://10.0.0.5:8765) instead of a local one.",
    )
    @click.option("--token", default=None, envvar="SHIFU_ENGINE_TOKEN", metavar="TOKEN",
                  help="Bearer token of the engine server (default serve.token).")
    @click.option(
        "--kiosk/--no-kiosk",
        "kiosk",
        default=None,
        help="Force kiosk mode on or off (default: config kiosk.kiosk_mode, or on under systemd).",
    )
    @click.pass_context
    def kiosk(ctx: click.Context, engine_url: str | None, token: str | None, kiosk: bool | None) -> None:
        """The operator's screen: scan or type a code, read the procedure, press F1/F2/F3."""
        if ctx.invoked_subcommand is not None:
            return
        if engine_url and not engine_url.startswith(("http://", "https://")):
            raise click.UsageError(f"--engine wants an http:// or https:// URL, not {engine_url!r}")
        if not sys.stdin.isatty() or not sys.stdout.isatty():
            raise click.UsageError("the kiosk needs a terminal (run it in a terminal, tmux or on tty1)")
        from appliance.cli.main import settings
        from appliance.engine.factory import make_engine
        from appliance.ui.app import make_app

        config: Any = settings()
        mode = _kiosk_mode(kiosk, config.kiosk.kiosk_mode)
        if mode:
            os.environ.pop("TEXTUAL_ALLOW_SIGNALS", None)
            _ignore_terminal_signals()
        if engine_url:
            from appliance.engine.remote import RemoteEngine

            remote = RemoteEngine(engine_url, config, token=token if token is not None else config.serve.token)
            try:
                remote_app(config, remote, kiosk_mode=mode).run()
            finally:
                remote.close()
            return
        engine = make_engine(config)
        try:
            make_app(config, engine, kiosk_mode=mode).run()
        finally:
            engine.close()

    @kiosk.command("set-pin")
    def set_pin_command() -> None:
        """Set the technician PIN (stored as a salted scrypt hash in the state directory)."""
        from appliance import paths
        from appliance.ui.pin import check_pin_format, set_pin

        paths.ensure_state()
        pin = click.prompt("New technician PIN", hide_input=True, confirmation_prompt=True)
        problem = check_pin_format(pin)
        if problem:
            raise click.UsageError(problem)
        path = set_pin(pin)
        click.echo(f"technician PIN stored in {path}")


def remote_app(config: Any, remote: Any, *, kiosk_mode: bool | None = None, **kwargs: Any) -> Any:
    """The kiosk over a RemoteEngine: alarms come from the server's `GET /v1/alarms`."""
    from pathlib import Path

    from appliance.engine.remote import AlarmFeed
    from appliance.ui import app as ui_app
    from appliance.ui.app import KioskApp
    from appliance.ui.messages import AlarmsArrived

    class RemoteKioskApp(KioskApp):
        CSS_PATH = str(Path(ui_app.__file__).with_name(str(KioskApp.CSS_PATH)))  # relative to the UI, not here

        def on_mount(self) -> None:
            # Textual runs KioskApp.on_mount too; with watch_alarms=False it starts no local watcher.
            feed = AlarmFeed(remote, lambda rows: self.post_message(AlarmsArrived(rows)),
                             interval=config.kiosk.alarm_poll_s, lang=self.lang)
            self.watcher = cast(Any, feed)  # F5 updates its language; unmounting stops it
            feed.start()

    return RemoteKioskApp(config, cast(Any, remote), kiosk_mode=kiosk_mode, watch_alarms=False, **kwargs)
