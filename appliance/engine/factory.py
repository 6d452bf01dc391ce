"""Build an Engine from settings and the standard paths."""

from __future__ import annotations

from appliance import paths
from appliance.config import Settings
from appliance.engine.engine import Engine
from appliance.llm.base import LLMBackend
from appliance.store.opstore import OpStore
from kb.embed import SentenceTransformerEmbedder
from kb.errors import ModelError
from kb.versions import VersionStore
from models.registry import load_registry


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
    registry = load_registry(paths.models_toml())
    base = registry.base()
    if model.path is not None:
        from dataclasses import replace

        base = replace(base, id=model.path.stem, path=model.path, sha256="")
    lora = registry.adapter() if adapter else None
    if model.adapter is not None and adapter:
        from models.registry import ModelEntry

        lora = ModelEntry(id=model.adapter.stem, path=model.adapter, kind="adapter")
    if model.backend == "llama_cpp":
        from appliance.llm.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(
            base, lora, n_ctx=model.n_ctx, n_threads=model.n_threads, n_gpu_layers=model.n_gpu_layers,
            flash_attn=model.flash_attn, hash_cache=paths.state_dir() / "hashes.json",
        )
    raise ModelError(f"model.backend = {model.backend!r} is not available in this build")


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
        backend_factory=lambda: make_backend(settings),
        opstore=OpStore(paths.ops_db()) if with_opstore else None,
        embedder=embedder,
    )
