"""A running `shifu serve` follows an adapter imported by USB (issue 16, item 4), with the real parts:
the embedded SmolLM2 base, a real LoRA GGUF adapter, a signed bundle imported by `shifu bundle
import` while the server runs as its own process on 127.0.0.1, and the audit rows in SQLite.
The next answer after the import is written by the new pair and its audit row says so.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner
from gguf_adapters import write_adapter
from test_bundle_models_atomic import embedded_sha256, registry_now, trusted_key
from test_chroma_server import free_port
from test_model_checks import adapter_bundle

from models.registry import embedded_model_path, file_sha256


def audit_pairs() -> list[tuple[str, str | None]]:
    from appliance import paths

    with sqlite3.connect(paths.ops_db()) as db:
        return db.execute("SELECT model_sha256, adapter_sha256 FROM audit ORDER BY id").fetchall()


def ask(url: str) -> dict[str, object]:
    response = httpx.post(f"{url}/v1/ask", json={"query": "A01", "lang": "en", "machine": "CV-01"}, timeout=600)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_serve_answers_with_the_adapter_imported_while_it_runs(kb_home: Path, tmp_path: Path) -> None:
    from appliance.cli.main import cli

    key = trusted_key(kb_home, tmp_path)
    registry_now(kb_home)
    adapter = write_adapter(tmp_path / "line3-lora.gguf", embedded_model_path(), base_sha256=embedded_sha256())
    bundle = adapter_bundle(tmp_path, key, adapter)
    port = free_port()
    env = {**os.environ, "SHIFU_HOME": str(kb_home), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else "serve exited"
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "shifu serve did not come up"
            time.sleep(0.5)
        first = ask(url)
        assert first["model"]["adapter_sha256"] is None  # type: ignore[index]
        result = CliRunner().invoke(cli, ["bundle", "import", str(bundle)])
        assert result.exit_code == 0, result.output
        second = ask(url)
        assert second["model"]["adapter_sha256"] == file_sha256(adapter)  # type: ignore[index]
        assert second["model_available"] is True
    finally:
        server.terminate()
        server.wait(timeout=60)
    base = embedded_sha256()
    assert audit_pairs() == [(base, None), (base, file_sha256(adapter))]
