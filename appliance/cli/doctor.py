"""`shifu doctor`: versions, install, config, KB, model, GPU, services, serial lines and database
health, one line each. A check is bad only when something that should work does not; what is
merely absent here (systemd in a container, a GPU on a CPU build) is reported as ok with a note.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.config import Settings
from kb.errors import ShifuError


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def _verify_check(active_base: str, active_adapter: str) -> tuple[bool, str]:
    """The active pair and the hashes the last `shifu model verify` read from the disk, with its time.

    Bad only when that verify found one of the active pair's files damaged; never having verified
    (or verified another pair) is reported, not failed.
    """
    from appliance.cli.model_cmd import VERIFY_RECORD
    from models.registry import boot_id, load_verify_record

    pair = active_base + (f" + adapter {active_adapter}" if active_adapter else "")
    # The manual verify's record, or the root boot step's (`shifu model verify --boot`), whichever
    # is of this boot and later.
    records = [r for r in (load_verify_record(paths.state_dir() / VERIFY_RECORD),
                           load_verify_record(paths.boot_hash_file().parent / VERIFY_RECORD)) if r is not None]
    records.sort(key=lambda r: (r.get("boot_id") == boot_id(), str(r.get("time", ""))))
    record = records[-1] if records else None
    if record is None:
        return True, f"active pair {pair}: never verified; run `shifu model verify`"
    checks = {str(c.get("id")): c for c in record.get("checks", []) if isinstance(c, dict)}  # type: ignore[attr-defined]
    parts, ok = [], True
    for ident in filter(None, (active_base, active_adapter)):
        check = checks.get(ident)
        if check is None:
            parts.append(f"{ident} not verified")
            continue
        ok = ok and bool(check.get("ok"))
        state = "ok" if check.get("ok") else f"BAD ({check.get('detail')})"
        parts.append(f"{ident} sha256 {str(check.get('sha256', ''))[:16]} {state}")
    when = str(record.get("time", "?")) + ("" if record.get("boot_id") == boot_id() else ", an earlier boot")
    return ok, f"active pair {pair}; last verify {when}: " + "; ".join(parts)


SERVICES = ("shifu-kiosk.service", "shifu-intake.service", "shifu-serve.service")
SERIAL_GLOBS = ("ttyUSB*", "ttyACM*", "serial/by-id/*")


def build_info() -> dict[str, Any] | None:
    """What the offline installer recorded about this release (`<venv>/build-info.json`), if any."""
    path = Path(sys.prefix) / "build-info.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _install_check(info: dict[str, Any] | None) -> tuple[bool, str]:
    if info is None:
        return True, f"development install at {sys.prefix} (no build-info.json)"
    cuda = info.get("cuda") or {}
    variant = f"CUDA {cuda.get('version')} sm_{cuda.get('architectures')}" if cuda else "CPU"
    return True, f"release {info.get('shifu')} build {info.get('build_id')} ({variant}) at {sys.prefix}"


def _systemctl(*args: str) -> str:
    try:
        result = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() or "unknown"


def _services_check() -> tuple[bool, str]:
    """Units that are enabled must be active; without a running systemd there is nothing to ask."""
    if not shutil.which("systemctl") or not Path("/run/systemd/system").exists():
        return True, "systemd is not running here; services not checked"
    parts, ok = [], True
    for unit in SERVICES:
        enabled, active = _systemctl("is-enabled", unit), _systemctl("is-active", unit)
        if enabled == "enabled" and active != "active":
            ok = False
        parts.append(f"{unit.removesuffix('.service')} {active} ({enabled})")
    return ok, ", ".join(parts)


def _serial_check(settings: Settings) -> tuple[bool, str]:
    present = sorted(str(p) for pattern in SERIAL_GLOBS for p in Path("/dev").glob(pattern))
    missing = [
        port.device
        for port in settings.serial.ports
        if port.device.startswith("/dev/") and not Path(port.device).exists()
    ]
    detail = f"{len(settings.serial.ports)} configured; present: {', '.join(present) or 'none'}"
    if missing:
        detail += f"; MISSING: {', '.join(missing)} (plugged out, or a wrong path in [[serial.ports]])"
    return not missing, detail


def intake_checks(settings: Settings) -> list[tuple[str, bool, str]]:
    """One line per OPC UA server and MQTT broker: its state, last message and counts (intake_status.json)."""
    import time

    from appliance.intake.runner import STATUS_FILE

    if not (settings.mqtt.brokers or settings.opcua.servers):
        return [("intake", True, "no [[opcua.servers]] or [[mqtt.brokers]] configured")]
    path = paths.state_dir() / STATUS_FILE
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
        inputs = list(status["inputs"])
    except (OSError, ValueError, KeyError, TypeError):
        return [("intake", False, f"shifu intake has not reported ({path} missing or unreadable): is it running?")]
    now = time.time()
    age = now - float(status.get("written") or 0)
    stale = age > max(30.0, 5 * settings.serial.status_interval_s)
    lines: list[tuple[str, bool, str]] = []
    for item in inputs:
        counts = item.get("counters") or {}
        last = item.get("last_message")
        detail = (f"{item.get('name')} {item.get('state')}; "
                  f"{f'last message {now - float(last):.0f} s ago' if last else 'no message yet'}; "
                  + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("alarms", "repeats", "unparsed", "redelivered")))
        if item.get("kind") == "opcua" and item.get("state") == "connected" and any(
                counts.get(k) for k in ("acknowledged", "ack_refused", "ack_failed")):
            detail += (f"; acknowledged {counts.get('acknowledged', 0)}, refused {counts.get('ack_refused', 0)}, "
                       f"failed {counts.get('ack_failed', 0)}")
        if counts.get("unknown_alias"):  # Sparkplug DATA naming aliases no birth defined: alarms may be missed
            detail += f"; {counts['unknown_alias']} Sparkplug metrics of unknown alias (waiting for a birth)"
        if item.get("last_error") and item.get("state") != "connected":
            detail += f"; last error: {item['last_error']}"
        if stale:
            detail = f"STALE: written {age:.0f} s ago (shifu intake stopped?); " + detail
        lines.append((f"intake {item.get('kind')}", item.get("state") == "connected" and not stale, detail))
    return lines or [("intake", False, "shifu intake reports no network input")]


def _nvidia() -> str:
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,memory.used,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""


def _gpu_check(settings: Settings, info: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether GPU offload is in effect: the build can offload, the config asks for it, a GPU exists."""
    try:
        from llama_cpp import llama_cpp as lib

        supports = bool(lib.llama_supports_gpu_offload())
    except Exception as error:  # a broken llama.cpp build must still be reported
        return False, f"llama.cpp unavailable: {error}"
    layers = settings.model.n_gpu_layers
    gpu = _nvidia()
    wants_cuda = bool(info and info.get("cuda"))
    if settings.model.backend != "llama_cpp":
        return True, f"model runs in a {settings.model.backend} server; local offload not used"
    if layers != 0 and not supports:
        return False, (
            f"model.n_gpu_layers = {layers} but this llama.cpp build has no GPU offload; "
            "install a --cuda build or set n_gpu_layers = 0"
        )
    if wants_cuda and not supports:
        return False, "a CUDA release is installed but llama.cpp reports no GPU offload (driver or libraries?)"
    if supports and layers != 0:
        return bool(gpu), (
            f"offload in effect: n_gpu_layers {layers} on {gpu}"
            if gpu
            else f"n_gpu_layers {layers} but nvidia-smi finds no GPU"
        )
    if supports:
        return True, f"GPU offload available but off (model.n_gpu_layers = 0){'; ' + gpu if gpu else ''}"
    return True, "CPU only (no GPU offload in this build)" + (f"; GPU present: {gpu}" if gpu else "")


def checks(settings: Settings, *, load_model: bool = False) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        results.append({"name": name, "ok": ok, "detail": detail})

    versions = {n: _version(n) for n in ("shifu", "llama-cpp-python", "chromadb", "sentence-transformers", "textual")}
    add("python", True, platform.python_version())
    add("packages", "missing" not in versions.values(), ", ".join(f"{k} {v}" for k, v in versions.items()))
    info = build_info()
    add("install", *_install_check(info))
    add(
        "paths",
        True,
        f"config {paths.config_file()} · state {paths.state_dir()}"
        + (f" (SHIFU_HOME={os.environ['SHIFU_HOME']})" if os.environ.get("SHIFU_HOME") else ""),
    )
    from kb.versions import VersionStore

    store = VersionStore(paths.kb_dir())
    try:
        from kb.reader import KnowledgeBase

        kbase = KnowledgeBase(store.current_path())
        counts = kbase.counts()
        add(
            "kb",
            counts["codes"] + counts["chunks"] > 0,
            f"version {kbase.version} ({kbase.meta.get('name', '')}): {counts['codes']} codes, "
            f"{counts['records']} records, {counts['chunks']} passages; versions {store.versions()}",
        )
        kbase.close()
    except ShifuError as error:
        add("kb", False, str(error))
    try:
        from models.registry import file_sha256, load_registry

        registry = load_registry(paths.models_toml())
        base = registry.base()
        sha = file_sha256(base.path, paths.state_dir() / "hashes.json") if base.path.exists() else "missing"
        matches = not base.sha256 or base.sha256 == sha
        add(
            "model",
            base.path.exists() and matches,
            f"{base.id} {base.path} sha256 {sha[:16]}{'' if matches else ' (does not match registry)'}; "
            f"backend {settings.model.backend}, n_gpu_layers {settings.model.n_gpu_layers}",
        )
        adapter = registry.adapter()
        if adapter is not None:
            asha = file_sha256(adapter.path, paths.state_dir() / "hashes.json") if adapter.path.exists() else "missing"
            amatch = not adapter.sha256 or adapter.sha256 == asha
            add(
                "adapter",
                adapter.path.exists() and amatch,
                f"{adapter.id} {adapter.path} sha256 {asha[:16]}{'' if amatch else ' (does not match registry)'}",
            )
        add("verify", *_verify_check(registry.active_base, registry.active_adapter))
        configured = [f"{name} = {value}" for name, value in (("model.path", settings.model.path),
                                                                ("model.adapter", settings.model.adapter)) if value]
        if configured:  # loaded instead of the registry's pair, with no recorded hash to check
            add("unverified", True, f"UNVERIFIED: {', '.join(configured)} in the configuration is loaded without "
                                    "a registry hash; register it (`shifu model export --register`) to have it checked")
    except ShifuError as error:
        add("model", False, str(error))
    add("gpu", *_gpu_check(settings, info))
    add("services", *_services_check())
    add("serial", *_serial_check(settings))
    for line in intake_checks(settings):
        add(*line)
    if load_model:
        from appliance.engine.factory import make_backend
        from appliance.llm.base import GenerateOptions

        try:
            backend = make_backend(settings)
            backend.load()
            text = "".join(backend.stream([{"role": "user", "content": "ok"}], GenerateOptions(max_tokens=2)))
            loaded = backend.info()
            add("generate", True, f"{loaded.base_id} on {loaded.device}: {text!r}")
        except ShifuError as error:
            add("generate", False, str(error))
    try:
        from appliance.store.opstore import OpStore

        store_db = OpStore(paths.ops_db())
        audit = store_db.rows("SELECT count(*) AS n FROM audit")[0]["n"]
        alarms = store_db.rows("SELECT count(*) AS n FROM alarms")[0]["n"]
        ok = store_db.rows("PRAGMA integrity_check")[0]
        store_db.close()
        add("database", list(ok.values())[0] == "ok", f"{paths.ops_db()}: {audit} audit rows, {alarms} alarms")
    except Exception as error:
        add("database", False, str(error))
    return results
