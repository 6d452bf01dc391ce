"""A model pair is checked from its GGUF headers and by a short generation before it becomes
active (issue 16, item 3): a wrong architecture or vocabulary, a context the base was not built
for, or an adapter that loads but computes NaN never reaches the registry, by USB or by
`shifu model activate`; the KB part of such a bundle is not switched to either.

Everything is real: the embedded SmolLM2 base, LoRA adapter GGUFs written with the `gguf`
package (tests/gguf_adapters.py), llama.cpp loading them, signed bundles.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from gguf_adapters import write_adapter
from test_bundle_models_atomic import embedded_sha256, registry_now, trusted_key
from test_bundle_support import SAMPLE_KB, context

from kb.build import SourceSpec
from kb.errors import ModelError
from models.registry import embedded_model_path


def adapter_bundle(tmp_path: Path, key: Path, adapter: Path, *, with_kb: bool = False) -> Path:
    from kb.bundle.pack import BundlePlan, ModelFile, build_bundle

    plan = BundlePlan(sources=[SourceSpec(SAMPLE_KB)] if with_kb else [], label="June",
                      models=[ModelFile(file=adapter, id=adapter.stem, kind="adapter", base_sha256=embedded_sha256(),
                                        activate=True)], model_label="lora 2026-06")
    out = tmp_path / f"bundle-{adapter.stem}"
    build_bundle(plan, out, key)
    return out


def import_it(home: Path, bundle: Path) -> None:
    from appliance import paths
    from appliance.cli.bundle_cmd import register_models
    from kb.bundle.importer import import_bundle

    import_bundle(bundle, context(home, register_models=register_models, models_dir=paths.models_dir(),
                                  registry_file=paths.models_toml()))


# -- the header reader -----------------------------------------------------------------------
def test_header_reader_agrees_with_the_gguf_package_on_the_embedded_model() -> None:
    from gguf import GGUFReader

    from models.gguf_header import read_header_file

    path = embedded_model_path()
    mine = read_header_file(path)
    theirs = GGUFReader(str(path))
    assert mine.architecture == str(theirs.fields["general.architecture"].contents()) == "llama"
    assert mine.vocab_size == len(theirs.fields["tokenizer.ggml.tokens"].data) == 49152
    assert mine.arch_value("context_length") == theirs.fields["llama.context_length"].contents()
    assert mine.tensors == {t.name: tuple(int(d) for d in t.shape) for t in theirs.tensors}


@pytest.mark.parametrize("damage", ["truncated", "tensor_count", "string_length", "version"])
def test_hostile_headers_are_refused_without_allocating(tmp_path: Path, damage: str) -> None:
    from models.gguf_header import read_header_file

    good = embedded_model_path().read_bytes()[: 1 << 20]
    bad = bytearray(good)
    if damage == "truncated":
        bad = bad[:5000]
    elif damage == "tensor_count":
        bad[8:16] = struct.pack("<Q", 1 << 60)
    elif damage == "string_length":
        bad[24:32] = struct.pack("<Q", 1 << 62)  # the first key's length
    else:
        bad[4:8] = struct.pack("<I", 99)
    path = tmp_path / "hostile.gguf"
    path.write_bytes(bytes(bad))
    with pytest.raises(ModelError):
        read_header_file(path)


# -- adapters that do not fit their base ---------------------------------------------------
@pytest.mark.parametrize(("make", "reason"), [
    ({"architecture": "qwen2"}, "is for a qwen2 model"),
    ({"extra_tensors": {"token_embd.weight.lora_a": (576, 1), "token_embd.weight.lora_b": (1, 32000)}},
     "vocabulary does not fit"),
    ({"extra_tensors": {"blk.40.attn_q.weight.lora_a": (576, 1), "blk.40.attn_q.weight.lora_b": (1, 576)}},
     "does not have"),
])
def test_an_adapter_that_does_not_fit_is_refused_and_the_registry_untouched(
    home: Path, tmp_path: Path, make: dict[str, object], reason: str
) -> None:
    from appliance import paths
    from kb.bundle.importer import ImportRefused

    key = trusted_key(home, tmp_path)
    before = registry_now(home)
    adapter = write_adapter(tmp_path / "line3-lora.gguf", embedded_model_path(), base_sha256=embedded_sha256(),
                            **make)  # type: ignore[arg-type]
    with pytest.raises(ImportRefused, match=reason):
        import_it(home, adapter_bundle(tmp_path, key, adapter))
    assert paths.models_toml().read_bytes() == before


def test_an_adapter_recording_another_base_in_its_file_is_refused(home: Path, tmp_path: Path) -> None:
    """The manifest claims the embedded base; the file's own shifu.base_sha256 (written at export) disagrees."""
    from appliance import paths
    from kb.bundle.importer import ImportRefused

    key = trusted_key(home, tmp_path)
    before = registry_now(home)
    adapter = write_adapter(tmp_path / "line3-lora.gguf", embedded_model_path(), base_sha256="cd" * 32)
    with pytest.raises(ImportRefused, match="exported for base sha256 cdcdcd"):
        import_it(home, adapter_bundle(tmp_path, key, adapter))
    assert paths.models_toml().read_bytes() == before


def test_a_context_the_base_was_not_built_for_is_refused_at_load(home: Path) -> None:
    from appliance.llm.llama_cpp import LlamaCppBackend
    from models.registry import embedded_entry

    entry = embedded_entry()
    backend = LlamaCppBackend(type(entry)(**{**entry.__dict__, "n_ctx": 32768}), n_ctx=512)
    with pytest.raises(ModelError, match="exceeds the model's 8192"):
        backend.load()
    assert backend._llm is None  # llama.cpp never opened it


# -- the health check ----------------------------------------------------------------------
def test_an_adapter_that_loads_but_computes_nan_is_refused_with_its_kb(kb_home: Path, tmp_path: Path) -> None:
    """All or nothing: the bundle's KB is not switched to and the registry is byte for byte as before."""
    from appliance import paths
    from kb.bundle.importer import ImportRefused
    from kb.versions import VersionStore

    key = trusted_key(kb_home, tmp_path)
    before = registry_now(kb_home)
    adapter = write_adapter(tmp_path / "line3-nan.gguf", embedded_model_path(), base_sha256=embedded_sha256(),
                            values="nan")
    with pytest.raises(ImportRefused, match="failed its health check.*non-finite logits"):
        import_it(kb_home, adapter_bundle(tmp_path, key, adapter, with_kb=True))
    assert paths.models_toml().read_bytes() == before
    assert VersionStore(kb_home / "kb").current() == 1


def test_a_working_adapter_is_imported_and_active(home: Path, tmp_path: Path) -> None:
    import tomllib

    from appliance import paths

    key = trusted_key(home, tmp_path)
    registry_now(home)
    adapter = write_adapter(tmp_path / "line3-lora.gguf", embedded_model_path(), base_sha256=embedded_sha256())
    import_it(home, adapter_bundle(tmp_path, key, adapter))
    assert tomllib.loads(paths.models_toml().read_text())["active_adapter"] == "line3-lora"


def test_model_activate_runs_the_health_check_before_the_registry_names_the_pair(
    home: Path, tmp_path: Path
) -> None:
    from appliance import paths
    from appliance.cli.main import cli
    from models.registry import ModelEntry, file_sha256, load_registry, save_registry, upsert

    registry_now(home)
    adapter = write_adapter(tmp_path / "line3-nan.gguf", embedded_model_path(), base_sha256=embedded_sha256(),
                            values="nan")
    registry = load_registry(paths.models_toml())
    upsert(registry, ModelEntry(id="line3-nan", path=adapter, kind="adapter", sha256=file_sha256(adapter),
                                base_sha256=embedded_sha256(), architecture="llama"))
    save_registry(registry, paths.models_toml())
    before = paths.models_toml().read_bytes()
    result = CliRunner().invoke(cli, ["model", "activate", "line3-nan"])
    assert result.exit_code == 1, result.output
    assert "health check" in result.output and "non-finite" in result.output
    assert paths.models_toml().read_bytes() == before
    assert os.environ["SHIFU_HOME"] == str(home)
