"""The learning loop for real on the CPU: records -> chat JSONL -> PEFT LoRA -> GGUF adapter -> llama.cpp.

One module-scoped run trains the embedded SmolLM2 on ten short examples (~35 steps) and exports
the adapter twice, with and without the q/k permutation. The comparisons isolate the adapter:
llama.cpp runs an F32 GGUF dequantized from the embedded Q4_1 file, i.e. the same weights
transformers trains on, so base logits agree and any difference is the adapter's export.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("peft")
pytest.importorskip("gguf")

from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo
from kb.errors import ModelError
from models import prompt

CODES = """code,title,steps,machine_model,severity,safety,lang
P-10,Oil too hot,Stop the pump | Check the cooler fan,PR-5,warning,,en
P-11,Ram stuck,Stop the press | Check the return valve,PR-5,warning,,en
P-12,Curtain fault,Clean the lenses | Align the curtain,PR-5,critical,Never bridge the curtain,en
P-13,Lube low,Fill the lube tank | Change the lube filter,PR-5,warning,,en
P-14,Clutch slip,Check the clutch air | Check the lining,PR-5,critical,,en
"""
RECORDS = """date,machine_id,machine_model,code,symptom,action,parts,result,technician,duration_min
2024-01-05,PR-01,PR-5,P-10,oil at 70 C,replaced fan relay K7,relay K7,fixed,Alice Wong,30
2024-01-09,PR-02,PR-5,P-11,ram stays down,cleaned valve spool,,fixed,Bob Lee,45
2024-01-15,PR-01,PR-5,P-12,curtain blinks,Alice Wong realigned bracket,,fixed,Alice Wong,20
2024-01-20,PR-03,PR-5,P-13,lube alarm,replaced filter F2,filter F2,fixed,Bob Lee,25
2024-02-02,PR-02,PR-5,P-14,press overruns,set clutch air 5 bar,,fixed,Carol Chen,40
2024-02-06,PR-03,PR-5,P-10,oil hot at noon,cleaned cooler fins,,fixed,Bob Lee,35
2024-02-11,PR-01,PR-5,P-11,ram slow,replaced valve coil,valve coil,fixed,Alice Wong,50
2024-02-17,PR-02,PR-5,P-12,fault after wash,dried connector,,fixed,Carol Chen,15
2024-02-23,PR-03,PR-5,P-13,lube drops,tightened pump fitting,,fixed,Bob Lee,20
2024-02-27,PR-01,PR-5,P-14,burnt smell,replaced lining,lining,fixed,Alice Wong,180
2024-03-04,PR-02,PR-5,P-10,oil 75 C,replaced oil cooler,oil cooler,fixed,Bob Lee,120
2024-03-04,PR-02,PR-5,P-10,oil 75 C,replaced oil cooler,oil cooler,fixed,Bob Lee,120
2024-03-05,PR-03,PR-5,P-11,ram stuck,,,,Carol Chen,30
2024-03-06,PR-01,PR-5,P-13,lube alarm,replaced pump,,fixed,Bob Lee,60
2024-03-06,PR-01,PR-5,P-13,lube alarm,replaced pump,,not_fixed,Bob Lee,60
2024-03-07,PR-01,PR-5,Z-99,unknown code,reset,,fixed,Bob Lee,5
"""
STEPS = 35
SEQ_LEN = 448
MIN_GAIN = 0.5  # nats per answer token that the adapter must add on every trained prompt


def write_source(root: Path) -> Path:
    source = root / "press-kb"
    (source / "codes").mkdir(parents=True)
    (source / "records").mkdir()
    (source / "codes" / "press.csv").write_text(CODES, encoding="utf-8")
    (source / "records" / "records.csv").write_text(RECORDS, encoding="utf-8")
    return source


def cli(*args: str) -> Any:
    from appliance.cli.main import cli as shifu

    result = CliRunner().invoke(shifu, list(args), catch_exceptions=False)
    return result


def last_logits(llm: Any, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)


def answer_logprob(llm: Any, chat: list[dict[str, str]]) -> float:
    """Mean log-probability per token of the chat's answer (and its stop token) after its prompt.

    Prompt and answer are tokenized apart, as training tokenizes them (models.finetune.examples)
    and as llama.cpp sees them when it generates the answer after the prompt.
    """
    def encode(text: str) -> list[int]:
        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    prompt_ids, answer_ids = encode(prompt.chatml(chat[:-1])), encode(chat[-1]["content"] + prompt.STOP[0])
    llm.reset()
    llm.eval(prompt_ids + answer_ids)
    # The logits at position i predict token i + 1.
    logits = np.array(llm.scores[len(prompt_ids) - 1: len(prompt_ids) + len(answer_ids) - 1], dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    logprobs = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    return float(logprobs[np.arange(len(answer_ids)), answer_ids].mean())


# -- dataset -------------------------------------------------------------------------------
def test_data_build_cleans_splits_and_uses_the_inference_layout(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "data"
    # Free-mode targets (the written JSON answer); quote-mode targets are checked in test_quote.py.
    result = cli("data", "build", str(write_source(tmp_path)), "--out", str(out), "--holdout-months", "1",
                 "--scrub-names", "--answer-mode", "free")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["train"], summary["eval"], summary["eval_from"]) == (10, 1, "2024-03-01")
    dropped = summary["dropped"]
    assert dropped["duplicate"] == 1
    assert dropped["contradictory (same repair with different results)"] == 2
    assert dropped["code not in the code table"] == 1
    assert sum(dropped.values()) == 16 - 11
    assert set(summary["codes"]) == {"P-10", "P-11", "P-12", "P-13", "P-14"}
    assert 250 < summary["tokens"]["max"] <= SEQ_LEN
    assert "dropped:" in result.output and "codes covered: 5" in result.output

    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    first = rows[0]
    assert first["meta"]["code"] == "P-10"
    answer = json.loads(first["messages"][2]["content"])
    assert [s["text"] for s in answer["steps"]] == ["Stop the pump", "Check the cooler fan"]
    assert "replaced fan relay K7" in answer["summary"] and answer["parts"] == ["relay K7"]
    # The exact layout models.prompt gives the engine: rebuild the context and compare byte for byte.
    ctx = prompt.PromptContext(
        query="P-10 oil at 70 C", lang="en", machine="PR-01 (PR-5)", code="P-10", title="Oil too hot",
        severity="warning", steps=("Stop the pump", "Check the cooler fan"),
        passages=[prompt.PromptPassage(1, "press.csv", "P-10 Oil too hot (PR-5)",
                                       "P-10 Oil too hot\nStop the pump\nCheck the cooler fan")])
    assert first["messages"] == prompt.messages(ctx, answer)
    # Later repairs of a code see the earlier ones as history, laid out as the engine does.
    p10_later = next(r for r in rows if r["meta"]["origin"].startswith("2024-02-06"))
    assert "- 2024-01-05 PR-01: oil at 70 C -> replaced fan relay K7 (fixed)" in p10_later["messages"][1]["content"]
    assert "- fixed 1x by: replaced fan relay K7" in p10_later["messages"][1]["content"]
    text = (out / "train.jsonl").read_text()
    assert "Alice Wong" not in text and "a technician realigned bracket" in text
    held = json.loads((out / "eval.jsonl").read_text())
    assert held["meta"]["date"] == "2024-03-04"


def test_data_build_takes_kiosk_feedback(tmp_path: Path, home: Path) -> None:
    export = tmp_path / "shifu-export-20240310-080000"
    export.mkdir()
    generated = {"summary": "Oil too hot.", "steps": [{"text": "Stop the pump", "cites": [2]},
                                                      {"text": "Wipe the sight glass", "cites": [1]}],
                 "safety": [], "parts": [], "escalate": False, "cites": ["x"], "text": "..."}
    audits = [{"id": i, "query": "P-10", "lang": "en", "machine_id": "PR-01", "code": "P-10",
               "answer": generated if i != 3 else None} for i in (1, 2, 3)]
    feedback = [{"id": 1, "audit_id": 1, "verdict": "fixed", "operator": "op7", "created": "2024-03-09T08:00:00Z"},
                {"id": 2, "audit_id": 2, "verdict": "not_fixed", "operator": "", "created": "2024-03-09T09:00:00Z"},
                {"id": 3, "audit_id": 3, "verdict": "fixed", "operator": "", "created": "2024-03-09T10:00:00Z"}]
    (export / "audit.jsonl").write_text("\n".join(json.dumps(a) for a in audits))
    (export / "feedback.jsonl").write_text("\n".join(json.dumps(f) for f in feedback))
    (export / "export.json").write_text("{}")
    out = tmp_path / "data"
    result = cli("data", "build", str(export), "--codes", str(write_source(tmp_path) / "codes"), "--out", str(out),
                 "--holdout-months", "0", "--json", "--answer-mode", "free")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["train"] == 1 and summary["dropped"] == {
        "feedback 'not_fixed' (only answers that fixed the problem teach)": 1,
        "feedback on an answer the model did not give": 1}
    row = json.loads((out / "train.jsonl").read_text())
    # Citations re-derived from the passages shown now: the code row [1] holds only the first step.
    assert json.loads(row["messages"][2]["content"])["steps"] == [{"text": "Stop the pump", "cites": [1]},
                                                                  {"text": "Wipe the sight glass", "cites": []}]
    assert row["meta"]["kind"] == "feedback"


MANUAL = """# PR-5 press manual

## Hydraulic oil cooler

When the oil runs hot (above 65 C), stop the pump and let it cool. Check that the cooler fan turns
and clean the cooler fins; a failed fan relay K7 stops the fan.

## Return valve

A ram that stays down or moves slowly points to the return valve: clean the spool, check the coil.

## Light curtain

Clean both lenses and align the curtain with the beam indicator. Never bridge the curtain.
"""


class CapturingBackend(LLMBackend):
    """Records the messages the engine sends and answers with one fixed, valid JSON answer."""

    name = "capture"

    def __init__(self) -> None:
        self.calls: list[list[dict[str, str]]] = []

    def load(self) -> None:
        pass

    def info(self) -> ModelInfo:
        return ModelInfo(backend=self.name, base_id="capture")

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        self.calls.append(messages)
        yield json.dumps({"summary": "Oil too hot.", "steps": [{"text": "Stop the pump", "cites": [1]}],
                          "safety": [], "parts": [], "escalate": False})


def test_data_build_context_is_the_engines_for_the_same_record(tmp_path: Path, home: Path, embedder: Any) -> None:
    """A record's training prompt is byte for byte what the engine sends the model for that query,
    over the KB as it stood when the repair was asked about (the records before it)."""
    from appliance import paths
    from appliance.config import load_settings
    from appliance.engine import Engine
    from appliance.engine.types import Query
    from kb.build import SourceSpec, build
    from kb.reader import KnowledgeBase
    from kb.versions import VersionStore
    from models.dataset import build_dataset
    from models.dataset_sources import read_sources

    asked = "2024-03-04"  # PR-02 reports P-10 "oil 75 C"; its history then: four earlier P-10 repairs
    records = RECORDS + ("2023-11-20,PR-02,PR-5,P-10,oil hot after lunch,cleaned cooler fins,,fixed,Bob Lee,30\n"
                         "2023-12-11,PR-02,PR-5,P-10,oil hot,topped up oil,,not_fixed,Bob Lee,10\n")
    header, *rows = records.splitlines()
    folders = {}
    for name, kept in (("full", rows), ("as-asked", [r for r in rows if r[:10] < asked])):
        folder = write_source(tmp_path / name)
        (folder / "records" / "records.csv").write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
        (folder / "manuals").mkdir()
        (folder / "manuals" / "press.md").write_text(MANUAL, encoding="utf-8")
        folders[name] = folder
    build([SourceSpec(folders["as-asked"])], VersionStore(paths.kb_dir()), embedder)

    settings = load_settings()
    capture = CapturingBackend()
    engine = Engine(settings, VersionStore(paths.kb_dir()), backend_factory=lambda: capture, embedder=embedder)
    answer = engine.answer(Query("P-10 oil 75 C", machine_id="PR-02", lang="en"))
    assert answer.model_available and len(capture.calls) == 1
    sent = capture.calls[0]

    kb = KnowledgeBase(VersionStore(paths.kb_dir()).current_path(), embedder, rrf_k=settings.retrieval.rrf_k)
    build_dataset(read_sources([folders["full"]]), tmp_path / "data", holdout_months=0, kb=kb,
                  top_k=settings.retrieval.top_k)
    rows_out = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    example = next(r for r in rows_out if r["meta"]["origin"] == f"{asked} PR-02 P-10")
    assert example["messages"][:2] == sent
    # What the layout holds, so a change of either side's numbers shows above: two repairs (this
    # machine's first), the most frequent fix, and three retrieved passages, the manual among them.
    user = sent[1]["content"]
    past = user.split("Past repairs:\n")[1].split("\nPassages:")[0].splitlines()
    assert past == ["- 2023-12-11 PR-02: oil hot -> topped up oil (not_fixed)",
                    "- 2023-11-20 PR-02: oil hot after lunch -> cleaned cooler fins (fixed)",
                    "- fixed 2x by: cleaned cooler fins"], past
    shown = [line for line in user.splitlines() if line.startswith("[")]
    assert len(shown) == settings.retrieval.prompt_passages == 3
    assert any("(press.md > " in line for line in shown) and any("(press.csv > P-10" in line for line in shown)
    # The target cites the shown passages that hold each step, not a fixed [1]: the code row holds
    # both, the manual's oil-cooler section also says "stop the pump".
    number = {where: int(line[1:line.index("]")]) for line in shown
              for where in ("press.csv > P-10", "> Hydraulic oil cooler)") if where in line}
    target = json.loads(example["messages"][2]["content"])
    assert [s["cites"] for s in target["steps"]] == [sorted(number.values()), [number["press.csv > P-10"]]]


# -- export units --------------------------------------------------------------------------
def test_tensor_names_follow_llama_cpp() -> None:
    from models.export import gguf_name

    key = "base_model.model.model.layers.3.self_attn.{}_proj.lora_{}.weight"
    assert gguf_name(key.format("q", "A"), "llama", 30) == "blk.3.attn_q.weight.lora_a"
    assert gguf_name(key.format("k", "B"), "llama", 30) == "blk.3.attn_k.weight.lora_b"
    assert gguf_name(key.format("o", "A"), "qwen2", 28) == "blk.3.attn_output.weight.lora_a"
    mlp = "base_model.model.model.layers.27.mlp.down_proj.lora_B.weight"
    assert gguf_name(mlp, "qwen2", 28) == "blk.27.ffn_down.weight.lora_b"
    with pytest.raises(ModelError):
        gguf_name("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", "llama", 30)


def test_permutation_is_chosen_by_architecture() -> None:
    from models.export import needs_permutation, permute_rows

    assert needs_permutation("llama") and not needs_permutation("qwen2")
    with pytest.raises(ModelError):
        needs_permutation("gemma3")
    # Two heads of four rows: (0 1 | 2 3) per head becomes the rotary pairs (0 2 1 3).
    rows = np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
    assert permute_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


@pytest.mark.parametrize(("architecture", "permuted"), [("llama", True), ("qwen2", False)])
def test_export_permutes_only_llama_q_and_k(tmp_path: Path, architecture: str, permuted: bool) -> None:
    import gguf
    import torch
    from safetensors.torch import save_file

    from models.adapter_meta import AdapterMeta
    from models.export import export_adapter, permute_rows

    folder = tmp_path / "adapter"
    folder.mkdir()
    rng = np.random.default_rng(0)
    tensors = {}
    for proj, out_rows in (("q", 8), ("k", 4), ("v", 4)):
        prefix = f"base_model.model.model.layers.0.self_attn.{proj}_proj"
        tensors[f"{prefix}.lora_A.weight"] = torch.tensor(rng.normal(size=(2, 8)), dtype=torch.float32)
        tensors[f"{prefix}.lora_B.weight"] = torch.tensor(rng.normal(size=(out_rows, 2)), dtype=torch.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 4}))
    meta = AdapterMeta(architecture=architecture, n_head=2, n_head_kv=1, n_layer=1, base_sha256="ab" * 32)
    result = export_adapter(folder, tmp_path / "a.gguf", dtype="f32", meta=meta)
    reader = gguf.GGUFReader(str(result.path))
    assert reader.fields["general.architecture"].contents() == architecture
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 4.0
    written = {t.name: np.array(t.data) for t in reader.tensors}
    assert set(written) == {f"blk.0.attn_{p}.weight.lora_{m}" for p in "qkv" for m in "ab"}
    q_b = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].numpy()
    k_b = tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"].numpy()
    v_b = tensors["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"].numpy()
    expect_q = permute_rows(q_b, 2) if permuted else q_b
    expect_k = permute_rows(k_b, 1) if permuted else k_b
    assert np.array_equal(written["blk.0.attn_q.weight.lora_b"], expect_q)
    assert np.array_equal(written["blk.0.attn_k.weight.lora_b"], expect_k)
    assert np.array_equal(written["blk.0.attn_v.weight.lora_b"], v_b)
    assert result.permuted == (2 if permuted else 0)


def test_recipes_validate() -> None:
    from models.finetune.recipe import load_recipe

    cpu = load_recipe("embedded-cpu")
    assert cpu.backend == "peft" and cpu.base_gguf() is not None and cpu.base_gguf().exists()  # type: ignore[union-attr]
    gpu = load_recipe("qwen2.5-7b-unsloth")
    assert (gpu.backend, gpu.lora.rank, gpu.lora.alpha, gpu.train.seq_len) == ("unsloth", 16, 32, 2048)


# -- the real run --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Dataset -> 35 PEFT steps on the CPU -> GGUF adapters (with and without permutation) + an F32 base."""
    from models.dataset import build_dataset, llama_tokenizer
    from models.dataset_sources import read_sources
    from models.dequantize import dequantize_gguf
    from models.export import export_adapter
    from models.finetune import finetune
    from models.finetune.recipe import load_recipe
    from models.registry import embedded_model_path

    root = tmp_path_factory.mktemp("loop")
    data = root / "data"
    build_dataset(read_sources([write_source(root)]), data, holdout_months=1,
                  tokenizer=llama_tokenizer(embedded_model_path()))
    recipe = load_recipe("embedded-cpu")
    recipe = recipe.model_copy(update={"train": recipe.train.model_copy(
        update={"max_steps": STEPS, "seq_len": SEQ_LEN, "warmup_steps": 2})})
    adapter = root / "adapter"
    finetune(recipe, data, adapter, progress=print)
    return {
        "root": root, "data": data, "adapter": adapter,
        "gguf": export_adapter(adapter, root / "press.gguf", dtype="f32").path,
        "unpermuted": export_adapter(adapter, root / "press-unpermuted.gguf", dtype="f32", permute=False).path,
        "f32": dequantize_gguf(embedded_model_path(), root / "base-f32.gguf"),
    }


def test_training_writes_adapter_loss_curve_and_meta(trained: dict[str, Path]) -> None:
    from models.adapter_meta import read_meta

    adapter = trained["adapter"]
    meta = read_meta(adapter)
    assert (meta.architecture, meta.n_head, meta.n_head_kv, meta.steps, meta.examples) == ("llama", 9, 3, STEPS, 10)
    assert meta.final_loss is not None and meta.final_loss < 0.5 * float(meta.extra["first_loss"])
    assert (adapter / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert len((adapter / "loss.csv").read_text().splitlines()) == STEPS + 1
    print(f"training: {meta.train_seconds}s, loss {meta.extra['first_loss']:.3f} -> {meta.final_loss:.3f}")


def test_llama_cpp_logits_match_peft_only_with_the_permutation(trained: dict[str, Path]) -> None:
    import torch
    from llama_cpp import Llama
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from models.dataset import read_jsonl
    from models.registry import embedded_model_path

    chat = read_jsonl(trained["data"] / "eval.jsonl")[0]  # a prompt the adapter never saw
    text = prompt.chatml(chat[:-1])
    logits = {}
    for name, lora in (("base", None), ("adapter", trained["gguf"]), ("unpermuted", trained["unpermuted"])):
        llm = Llama(model_path=str(trained["f32"]), lora_path=str(lora) if lora else None, n_ctx=1024,
                    n_threads=os.cpu_count() or 2, logits_all=True, verbose=False)
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        logits[name] = last_logits(llm, tokens)
        llm.close()
    gguf = embedded_model_path()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    with torch.no_grad():
        ids = torch.tensor([tokens])
        peft_base = model(ids).logits[0, -1].double().numpy()
        merged = PeftModel.from_pretrained(model, str(trained["adapter"])).merge_and_unload()
        peft_merged = merged(ids).logits[0, -1].double().numpy()
    peft_delta = peft_merged - peft_base
    assert np.abs(peft_delta).max() > 1.0  # the adapter changes the prediction noticeably
    assert np.abs(logits["base"] - peft_base).max() < 0.05  # both bases are the same weights

    def error(name: str) -> float:
        delta = logits[name] - logits["base"]
        return float(np.linalg.norm(delta - peft_delta) / np.linalg.norm(peft_delta))

    with_perm, without = error("adapter"), error("unpermuted")
    print(f"adapter delta relative error: permuted {with_perm:.4f}, unpermuted {without:.4f}; "
          f"max |logit diff| {np.abs(logits['adapter'] - peft_merged).max():.4f} vs "
          f"{np.abs(logits['unpermuted'] - peft_merged).max():.4f}")
    assert with_perm < 0.02
    assert without > 5 * with_perm and without > 0.05
    # llama.cpp's top token is PEFT's, or ties it within rounding (a near tie may swap the two).
    assert peft_merged[int(np.argmax(logits["adapter"]))] > peft_merged.max() - 0.1


def test_adapter_raises_trained_answers_logprob_and_registry_refuses_another_base(
        trained: dict[str, Path], home: Path) -> None:
    from llama_cpp import Llama

    from appliance.llm.llama_cpp import LlamaCppBackend
    from models.dataset import read_jsonl
    from models.registry import EMBEDDED_ID, ModelEntry, embedded_model_path, file_sha256, load_registry

    result = cli("model", "export", str(trained["adapter"]), "--out", str(trained["root"] / "press-f16.gguf"),
                 "--dtype", "f16", "--base", str(embedded_model_path()), "--register", "--activate", "--ollama")
    assert result.exit_code == 0, result.output
    assert "registered adapter press-f16 (active)" in result.output
    modelfile = (trained["root"] / "Modelfile").read_text()
    assert "ADAPTER " in modelfile and "<|im_start|>" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    listing = cli("model", "list")
    assert "* adapter press-f16" in listing.output and f"* base    {EMBEDDED_ID}" in listing.output
    assert cli("model", "verify").exit_code == 0

    registry = load_registry(home / "models.toml")
    base, adapter = registry.base(), registry.adapter()
    assert adapter is not None and adapter.base_sha256 == file_sha256(base.path)
    # What the appliance runs: the registered Q4_1 base + the F16 GGUF LoRA through llama.cpp.
    # Measured as log-probabilities rather than greedy text: exact tokens differ between CPUs
    # (training and llama.cpp kernels round differently), a margin of nats per token does not.
    chats = read_jsonl(trained["data"] / "train.jsonl")
    scores: dict[str, list[float]] = {}
    for name, lora in (("tuned", adapter.path), ("plain", None)):
        llm = Llama(model_path=str(base.path), lora_path=str(lora) if lora else None, n_ctx=1024,
                    n_threads=os.cpu_count() or 2, logits_all=True, verbose=False)
        scores[name] = [answer_logprob(llm, chat) for chat in chats]
        llm.close()
    gains = [t - p for t, p in zip(scores["tuned"], scores["plain"], strict=True)]
    print("mean log-prob per answer token, plain -> tuned: "
          + ", ".join(f"{p:.2f} -> {t:.2f}" for p, t in zip(scores["plain"], scores["tuned"], strict=True)))
    # Seen here: the base alone -2.2 to -2.6 nats per answer token, with the adapter -0.1 to -0.5,
    # a gain of 1.9 to 2.2 on every prompt. MIN_GAIN leaves four times that slack for other CPUs;
    # the base in place of the adapter gains 0 and fails.
    assert len(chats) == 10 and min(gains) > MIN_GAIN, [round(g, 3) for g in gains]
    tuned = LlamaCppBackend(base, adapter, n_ctx=512)
    assert tuned.info().adapter_sha256 == file_sha256(adapter.path)
    tuned.close()

    # (c) the same adapter on another base (the F32 copy): refused before anything is loaded.
    other = ModelEntry(id="f32", path=trained["f32"], kind="base")
    with pytest.raises(ModelError, match="trained for another base"):
        LlamaCppBackend(other, adapter, n_ctx=512).load()
    assert cli("model", "activate", "none").exit_code == 0
    assert load_registry(home / "models.toml").active_adapter == ""


def test_signed_bundle_carries_the_adapter_to_an_appliance(trained: dict[str, Path], kb_home: Path,
                                                           tmp_path: Path) -> None:
    """Engineer: export + sign; appliance: import activates it, answers load it, the audit names both hashes."""
    import sqlite3

    from appliance import paths
    from models.registry import embedded_model_path, file_sha256, load_registry

    adapter = trained["root"] / "press-bundle.gguf"
    assert cli("model", "export", str(trained["adapter"]), "--out", str(adapter), "--dtype", "f16",
               "--base", str(embedded_model_path())).exit_code == 0
    keys = tmp_path / "engineer-keys"
    assert cli("bundle", "keygen", "--out", str(keys), "--name", "plant").exit_code == 0
    base_sha = file_sha256(embedded_model_path())
    built = cli("bundle", "build", "--adapter", str(adapter), "--adapter-base", base_sha, "--activate-model",
                "--model-label", "press 2026-12", "--out", str(tmp_path / "usb" / "bundle"),
                "--sign", str(keys / "plant.key"))
    assert built.exit_code == 0, built.output

    # Not trusted yet: refused, nothing registered.
    refused = cli("bundle", "import", str(tmp_path / "usb" / "bundle"))
    assert refused.exit_code != 0
    assert not paths.models_toml().exists() or "press-bundle" not in paths.models_toml().read_text()
    paths.keys_dir().mkdir(parents=True, exist_ok=True)
    (paths.keys_dir() / "plant.pub").write_bytes((keys / "plant.pub").read_bytes())
    imported = cli("bundle", "import", str(tmp_path / "usb" / "bundle"))
    assert imported.exit_code == 0, imported.output
    assert "* adapter press-bundle" in cli("model", "list").output

    answer = cli("ask", "A01", "--json")
    assert answer.exit_code == 0, answer.output
    body = json.loads(answer.stdout)
    assert body["model_available"] is True
    installed = load_registry(paths.models_toml()).adapter()
    assert installed is not None and installed.path.resolve().is_relative_to(kb_home.resolve())
    assert body["model"]["adapter"] == "press-bundle"
    assert body["model"]["adapter_sha256"] == file_sha256(adapter) == file_sha256(installed.path)
    assert body["model"]["base_sha256"] == base_sha
    with sqlite3.connect(paths.ops_db()) as db:
        row = db.execute("SELECT model_sha256, adapter_sha256 FROM audit ORDER BY rowid DESC LIMIT 1").fetchone()
    assert row == (base_sha, file_sha256(adapter))


@pytest.mark.gpu
def test_unsloth_backend_trains_on_cuda(trained: dict[str, Path], tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("unsloth")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.export import export_adapter
    from models.finetune import finetune
    from models.finetune.recipe import load_recipe
    from models.registry import embedded_model_path

    gguf = embedded_model_path()
    hf = tmp_path / "smollm2-hf"
    AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(hf)
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(hf)
    recipe = load_recipe("qwen2.5-7b-unsloth")
    recipe = recipe.model_copy(update={
        "base": recipe.base.model_copy(update={"hf": str(hf), "gguf": str(gguf)}),
        "train": recipe.train.model_copy(update={"max_steps": 10, "batch_size": 2, "grad_accum": 1, "seq_len": 512}),
    })
    meta = finetune(recipe, trained["data"], tmp_path / "adapter", progress=print)
    assert meta.final_loss is not None and meta.final_loss < float(meta.extra["first_loss"])
    assert export_adapter(tmp_path / "adapter", tmp_path / "a.gguf").tensors > 0
