"""Who may import whom (ARCHITECTURE.md): checked in fresh interpreters via sys.modules."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {line.split(".")[0] for line in result.stdout.split()}


@pytest.mark.parametrize(
    "statement",
    [
        "import kb.build, kb.reader, kb.search.hybrid, kb.versions",
        "import models.prompt, models.registry",
    ],
)
def test_kb_and_models_never_import_appliance(statement: str) -> None:
    assert "appliance" not in loaded_after(statement)


def test_engine_is_headless_and_training_free() -> None:
    loaded = loaded_after(
        "import appliance.engine, appliance.cli.main, appliance.engine.factory, appliance.llm.llama_cpp"
    )
    assert "textual" not in loaded
    assert not loaded & {"peft", "trl", "unsloth", "datasets"}


def test_cli_start_is_lazy() -> None:
    loaded = loaded_after("import appliance.cli.main")
    assert not loaded & {"torch", "llama_cpp", "chromadb", "sentence_transformers", "textual"}
