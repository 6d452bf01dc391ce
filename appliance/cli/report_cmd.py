"""`shifu report summary|handover|work-orders`: the supervisor's reports (see appliance.report)."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from appliance.config import Settings
    from appliance.report.handover import Handover


def register(cli: click.Group) -> None:
    cli.add_command(report)


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from error


@click.group()
def report() -> None:
    """The supervisor's reports: what breaks, how often, how fast it is fixed, what the KB misses."""


@report.command("summary")
@click.option("--from", "first", callback=_date, default=None, metavar="DATE",
              help="First day (YYYY-MM-DD, local time, inclusive; default: 29 days before --to).")
@click.option("--to", "last", callback=_date, default=None, metavar="DATE",
              help="Last day (YYYY-MM-DD, local time, inclusive; default: today).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for report.html, the PNG charts and the CSV tables.")
@click.option("--lang", type=click.Choice(["zh-TW", "en"]), default=None, help="Label language (default from config).")
@click.option("--line", default="", help="Only this production line's machines (from the KB's inventory).")
@click.option("--machine", "machine_id", default="", help="Only this machine.")
@click.option("--model", "machine_model", default="", help="Only machines of this model.")
@click.option("--repeat-days", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Repeat offenders: the same code on the same machine again within this many days.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def summary(first: date | None, last: date | None, out: Path, lang: str | None, line: str, machine_id: str,
            machine_model: str, repeat_days: float, quiet: bool) -> None:
    """Pareto, repeat offenders, repair time, first-time fix, KB gaps and model use as HTML, PNG and CSV."""
    from appliance import paths
    from appliance.config import load_settings
    from appliance.report.charts import cjk_font
    from appliance.report.data import Period, Scope, load
    from appliance.report.summary import Options, write_summary
    from kb.versions import VersionStore

    last = last or datetime.now().astimezone().date()
    first = first or last - timedelta(days=29)
    if first > last:
        raise click.BadParameter("--from is after --to", param_hint="--from")
    language = lang or load_settings().general.lang
    started = time.perf_counter()

    def say(message: str) -> None:
        if not quiet:
            click.echo(f"[{time.perf_counter() - started:6.1f}s] {message}", err=True)

    store = VersionStore(paths.kb_dir())
    version = store.current()
    kb_dir = store.path(version) if version is not None else None
    if kb_dir is None:
        say("no active knowledge base: repair records left out")
    if language == "zh-TW" and cjk_font() is None:
        click.echo("shifu: no CJK font found (install fonts-noto-cjk): Chinese chart labels will not render", err=True)
    period, scope = Period(first, last), Scope(line, machine_id, machine_model)
    say("reading the operational database and the repair records")
    data = load(paths.ops_db(), kb_dir, period, scope)
    say(f"{len(data.audit)} answers, {len(data.alarms)} alarms, {len(data.feedback)} feedback, "
        f"{len(data.repairs)} repair records")
    files = write_summary(data, out, period=period, scope=scope, lang=language,
                          options=Options(window_days=repeat_days), progress=say)
    say(f"done: {len(files)} files")
    click.echo(str(files["report.html"]))


@report.command("handover")
@click.option("--date", "day", callback=_date, default=None, metavar="DATE",
              help="The day the shift began (YYYY-MM-DD; default: the day the current shift began).")
@click.option("--shift", "shift_text", default=None, metavar="HH:MM-HH:MM",
              help="The shift; an end not after the start crosses midnight (default: the current one of "
                   "06:00-14:00, 14:00-22:00, 22:00-06:00; with --date alone: the whole day).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for handover.html and handover.csv.")
@click.option("--lang", type=click.Choice(["zh-TW", "en"]), default=None, help="Label language (default from config).")
@click.option("--summary", "with_note", is_flag=True,
              help="Add a two-sentence generated note (loads the configured model in this process; shown only "
                   "when it passes the gate).")
def handover(day: date | None, shift_text: str | None, out: Path, lang: str | None, with_note: bool) -> None:
    """The shift handover: the shift's alarms, which were fixed and how, which are open or escalated."""
    from appliance import paths
    from appliance.config import load_settings
    from appliance.report.handover import Shift, build_handover, current_shift, write_handover
    from kb.versions import VersionStore

    config = load_settings()
    language = lang or config.general.lang
    try:
        if shift_text is None and day is None:
            shift = current_shift(datetime.now().astimezone(), tuple(config.general.shifts))
        else:
            shift = Shift.parse(day or datetime.now().astimezone().date(), shift_text or "00:00-24:00")
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--shift") from error
    store = VersionStore(paths.kb_dir())
    version = store.current()
    data = build_handover(paths.ops_db(), shift, store.path(version) if version is not None else None, language)
    note = _note(config, data, language) if with_note and data.alarms else None
    files = write_handover(data, out, language, note)
    click.echo(f"{shift.describe()}: {len(data.alarms)} alarms, {data.count('fixed')} fixed, "
               f"{data.count('escalated')} escalated, {data.count('open')} open", err=True)
    click.echo(str(files["handover.html"]))


def _note(config: Settings, data: Handover, language: str) -> str | None:
    """The gated note, or None with the reason on stderr (the handover never fails for it)."""
    from appliance.engine.factory import make_backend
    from appliance.report.narrative import generate_note
    from kb.errors import ShifuError

    try:
        backend = make_backend(config)
        backend.load()
        try:
            note = generate_note(backend, data, language)
        finally:
            backend.close()
    except ShifuError as error:
        click.echo(f"shifu: no generated note: {error}", err=True)
        return None
    if note is None:
        click.echo("shifu: no generated note: the model does not write this language or its note failed the gate",
                   err=True)
    return note


@report.command("work-orders")
@click.option("--json", "as_json", is_flag=True, help="Print the drafts as JSON.")
@click.option("--all", "every", is_flag=True, help="Every draft, not only the open ones.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Most drafts to list.")
def work_orders(as_json: bool, every: bool, limit: int) -> None:
    """Work-order drafts from Call technician presses, newest first (`shifu export` writes them for the CMMS)."""
    import json

    from appliance import paths
    from appliance.store.opstore import OpStore

    if not paths.ops_db().exists():
        rows: list[dict[str, object]] = []
    else:
        store = OpStore(paths.ops_db())
        try:
            rows = store.work_orders(limit, status=None if every else "open")
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for row in rows:
        when = datetime.fromtimestamp(float(str(row["created"]))).astimezone().strftime("%Y-%m-%d %H:%M")
        click.echo(f"#{row['id']} {when} {row['machine_id'] or '-'} {row['code'] or '-'} {row['title'] or ''}"
                   f" (operator {row['operator'] or '-'}, {row['status']})")
        click.echo(f"    asked: {row['query'] or ''}")
        steps: list[str] = list(row["steps"] or [])  # type: ignore[call-overload]
        for number, step in enumerate(steps, start=1):
            click.echo(f"    {number}. {step}")
        presses: list[dict[str, object]] = list(row["tried"] or [])  # type: ignore[call-overload]
        tried = ", ".join(str(t["verdict"]) for t in presses)
        if tried:
            click.echo(f"    pressed before: {tried}")
