"""Build an Engine from settings and the standard paths."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from appliance import paths
from appliance.config import Settings
from appliance.engine.engine import Engine
from appliance.llm.base import LLMBackend
from appliance.llm.following import FollowingBackend
from appliance.store.opstore import OpStore
from kb.embed import SentenceTransformerEmbedder
from kb.errors import ModelError
from kb.versions import VersionStore
from models.registry import ModelEntry, load_registry


def make_backend(settings: Settings, *, adapter: bool = True) -> LLMBackend:
    """The configured LLM backend: in-process llama.cpp over the registry's (or the configured) model,
    an OpenAI-compatible server (`openai`) or Ollama (`ollama`).

    `adapter=False` loads the base alone (evaluation compares with and without the adapter).
    """
    model = settings.model
    if model.backend == "openai":
        from appliance.llm.openai_server import OpenAIServerBackend

        return OpenAIServerBackend(
            model.server_url, model.server_model, api_key=model.api_key, timeout_s=model.timeout_s,
            connect_timeout_s=model.connect_timeout_s, retries=model.retries, backoff_s=model.retry_backoff_s,
            response_format=model.response_format,
        )
    if model.backend == "ollama":
        from appliance.llm.ollama import OllamaBackend

        return OllamaBackend(
            model.server_url, model.server_model, n_ctx=model.n_ctx, timeout_s=model.timeout_s,
            connect_timeout_s=model.connect_timeout_s, retries=model.retries, backoff_s=model.retry_backoff_s,
        )
    if model.backend == "llama_cpp":
        base, lora = _llama_pair(settings, adapter=adapter)
        return _llama_backend(settings, base, lora)
    raise ModelError(f"model.backend = {model.backend!r} is not available in this build")


def _llama_pair(settings: Settings, *, adapter: bool = True) -> tuple[ModelEntry, ModelEntry | None]:
    """The registry's active base and adapter, or the files `model.path`/`model.adapter` name."""
    model = settings.model
    registry = load_registry(paths.models_toml())
    base = registry.base()
    if model.path is not None:
        base = replace(base, id=model.path.stem, path=model.path, sha256="")
    lora = registry.adapter() if adapter else None
    if model.adapter is not None and adapter:
        lora = ModelEntry(id=model.adapter.stem, path=model.adapter, kind="adapter")
    return base, lora


def _llama_backend(settings: Settings, base: ModelEntry, lora: ModelEntry | None) -> LLMBackend:
    from appliance.llm.llama_cpp import LlamaCppBackend

    model = settings.model
    return LlamaCppBackend(
        base, lora, n_ctx=model.n_ctx, n_threads=model.n_threads, n_gpu_layers=model.n_gpu_layers,
        flash_attn=model.flash_attn, hash_cache=paths.hash_cache(), boot_hashes=paths.boot_hash_file(),
        prompt_lookup_tokens=model.prompt_lookup_tokens,
    )


def make_following_backend(settings: Settings) -> LLMBackend:
    """The backend of a long-running process: for llama.cpp, the registry's active pair, reloaded
    between answers when it changes (appliance.llm.following); a server backend as it is (the
    server owns its model)."""
    if settings.model.backend != "llama_cpp":
        return make_backend(settings)

    def wanted() -> tuple[str, Callable[[], LLMBackend]]:
        base, lora = _llama_pair(settings)
        key = json.dumps([[e.id, str(e.path), e.sha256] for e in (base, lora) if e is not None])
        return key, lambda: _llama_backend(settings, base, lora)

    return FollowingBackend(wanted, watch=paths.models_toml())


def configure_chroma(settings: Settings) -> None:
    """Point every vector index of this process at the configured place (embedded files or a server)."""
    from kb.search import dense

    chroma = settings.chroma
    if chroma.mode == "server":
        dense.configure(dense.ChromaServer(chroma.host, chroma.port, chroma.collection_prefix, chroma.timeout_s))
    else:
        dense.configure(None)


def make_engine(settings: Settings, *, with_opstore: bool = True) -> Engine:
    paths.ensure_state()
    configure_chroma(settings)
    embedder = None
    if settings.retrieval.dense:
        embedder = SentenceTransformerEmbedder(settings.retrieval.embedding_model,
                                               torch_threads=settings.retrieval.torch_threads)
    return Engine(
        settings,
        VersionStore(paths.kb_dir()),
        backend_factory=lambda: make_following_backend(settings),
        opstore=OpStore(paths.ops_db()) if with_opstore else None,
        embedder=embedder,
    )
