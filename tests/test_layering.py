"""Who may import whom (ARCHITECTURE.md): checked in fresh interpreters via sys.modules."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

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


# -- the kiosk talks to the engine only through the client protocol ----------------------------
ROOT = Path(__file__).resolve().parent.parent
UI_FORBIDDEN = (
    "appliance.store",  # the operational database: feedback and alarms go through the client
    "kb.reader",  # the KB: the status and alarm titles come from the client
    "appliance.engine.engine",  # the Engine itself (LocalClient wraps it, outside the UI)
    "appliance.engine.local",
    "appliance.engine.factory",
)


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path) -> set[str]:
    """Modules a file names in its import statements (TYPE_CHECKING ones included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from package import module` names the module too
            names.update(f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}"))
    return names


def ui_import_chains(root_package: str = "appliance.ui") -> dict[str, list[str]]:
    """Every repo module the UI reaches through the imports its modules name, with the chain that reaches it.

    Package `__init__` files run on import but are followed only when a module names the package
    itself: `from appliance.engine import Engine` counts, `from appliance.engine.client import X` does
    not pull in what `appliance/engine/__init__.py` re-exports.
    """
    start = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted(ROOT.joinpath(*root_package.split(".")).rglob("*.py"))
    ]
    chains: dict[str, list[str]] = {name: [name] for name in start}
    todo = list(start)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None:
            continue
        for imported in sorted(_imports(path)):
            if imported.split(".")[0] in {"appliance", "kb", "models"} and imported not in chains:
                chains[imported] = [*chains[name], imported]
                todo.append(imported)
    return chains


def test_ui_reaches_the_engine_only_through_the_client_protocol() -> None:
    chains = ui_import_chains()
    assert "appliance.engine.client" in chains  # the check really follows the UI's imports
    bad = {
        name: " -> ".join(chain)
        for name, chain in chains.items()
        if name == "appliance.engine" or any(name == f or name.startswith(f + ".") for f in UI_FORBIDDEN)
    }
    assert not bad, "appliance.ui must use appliance.engine.client only:\n" + "\n".join(bad.values())


def test_kb_does_not_know_the_appliance_tables() -> None:
    """The operational database's export and backup live in appliance.store, not in the KB layer."""
    import sqlite_utils

    from appliance.serial import alarm_store
    from appliance.store import opstore
    from kb.store.migrate import migrate

    db = sqlite_utils.Database(memory=True)
    migrate(db, [*opstore.MIGRATIONS, *alarm_store.MIGRATIONS])
    tables = "|".join(t for t in db.table_names() if not t.startswith("_"))
    assert "feedback" in tables
    pattern = re.compile(rf"[\"'](?:{tables})[\"']|\b(?:FROM|INTO|UPDATE|TABLE)\s+(?:{tables})\b")
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in sorted(ROOT.joinpath("kb").rglob("*.py"))
        if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert not offenders, f"the KB layer names tables of the operational database: {offenders}"
