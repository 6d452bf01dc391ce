"""Settings: one pydantic-settings object with nested sections.

Sources, strongest first: constructor arguments, environment (`SHIFU_` prefix, `__` for
nesting, e.g. `SHIFU_MODEL__N_GPU_LAYERS=99`), the TOML file (`paths.config_file()`),
then the defaults below. Unknown keys and invalid values fail at start with a message
naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from appliance import paths
from appliance.serial_settings import SerialSettings
from kb.errors import ConfigError

Lang = Literal["zh-TW", "en"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GeneralSettings(Section):
    lang: Lang = "zh-TW"
    """Default answer and interface language."""
    site: str = "Shifu"
    """Plant or line name shown in the status bar."""
    max_query_chars: int = Field(default=500, ge=16, le=10_000)
    """Longest query accepted; longer input is refused with exit code 2."""
    shifts: list[str] = Field(default_factory=lambda: ["06:00-14:00", "14:00-22:00", "22:00-06:00"])
    """The plant's shifts as `HH:MM-HH:MM` (an end not after the start crosses midnight): the shift
    handover (`shifu report handover`, the technician screen) reports the one that holds the time."""

    @model_validator(mode="after")
    def _shifts_parse(self) -> GeneralSettings:
        for text in self.shifts:
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)", text.strip()):
                raise ValueError(f"general.shifts: {text!r} is not HH:MM-HH:MM")
        return self


class ModelSettings(Section):
    backend: Literal["llama_cpp", "openai", "ollama"] = "llama_cpp"
    """Which LLM backend answers: in-process llama.cpp, an OpenAI-compatible server, or Ollama."""
    path: Path | None = None
    """Base GGUF file; empty means the registry's active base (the embedded model by default)."""
    adapter: Path | None = None
    """LoRA GGUF adapter; empty means the registry's active adapter, if any."""
    n_ctx: int = Field(default=4096, ge=512, le=131072)
    """Context window in tokens."""
    n_threads: int | None = Field(default=None, ge=1)
    """CPU threads for generation; empty means all cores but one."""
    n_gpu_layers: int = Field(default=0, ge=-1)
    """Layers offloaded to the GPU (-1 = all; 0 on a machine without CUDA)."""
    flash_attn: bool = False
    """Flash attention (GPU builds)."""
    prompt_lookup_tokens: int = Field(default=0, ge=0, le=16)
    """In-process backend: tokens proposed per step by prompt-lookup decoding (0 = off). Answers copy
    the standard steps and passages, so the next tokens are often found in the prompt and verified
    in one batch. Logits are kept only for the verified rows (no `logits_all`). Off by default: on the
    CPU build measured here it was slower and its greedy output not identical to plain decoding (README,
    Performance). On a GPU, where a batch of 5-10 costs about as much as one token, try 4-8 and keep it
    only where `python -m bench --gpu` shows identical output and a speedup."""
    max_tokens: int = Field(default=640, ge=16, le=8192)
    """Upper bound on generated tokens; above what the answer grammar can need."""
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """Sampling temperature; 0 gives repeatable answers."""
    repeat_penalty: float = Field(default=1.15, ge=1.0, le=2.0)
    """Penalty on repeated tokens; small models otherwise loop inside a string."""
    seed: int = 1234
    """Sampling seed."""
    enabled: bool = True
    """False turns generation off everywhere (standard procedure, history and sources only)."""
    unsupported_lang: Literal["fallback", "omit"] = "fallback"
    """When the operator's language is not one the model writes (models.toml `languages`): `fallback`
    generates in a language it writes and labels it (`generated.lang`); `omit` leaves the explanation
    out with a notice. Never garbled text."""
    answer_mode: Literal["auto", "free", "quote"] = "auto"
    """How the model answers: `free` (it writes the JSON answer), `quote` (each step is a sentence of the
    standard procedure or the passages, chosen by number under a grammar; only a short summary is
    written), or `auto` (the base model's default in models.toml `answer_mode`: the embedded SmolLM2
    quotes)."""
    server_url: str = "http://127.0.0.1:8080/v1"
    """Base URL for the `openai` backend, or the Ollama host for `ollama`."""
    server_model: str = "shifu"
    """Model name sent to a server backend."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Per-request timeout for server backends (also the longest pause between two streamed pieces)."""
    connect_timeout_s: float = Field(default=3.0, gt=0)
    """How long a server backend waits to connect before it counts the server as down."""
    retries: int = Field(default=2, ge=0, le=10)
    """Extra attempts when a server backend cannot be reached or answers 429/5xx before streaming starts."""
    retry_backoff_s: float = Field(default=0.5, ge=0, le=30)
    """First pause between attempts; doubled after each failed attempt."""
    api_key: str = ""
    """Bearer token sent to the `openai` backend's server (vLLM `--api-key`); empty sends none."""
    response_format: Literal["json_object", "json_schema"] = "json_object"
    """How the `openai` backend passes the answer schema: `json_object` with a `schema` member (llama.cpp
    servers) or `json_schema` (vLLM and other OpenAI-style servers)."""


class RetrievalSettings(Section):
    enabled: bool = True
    """Retrieve manual passages at all (false: code table and history only; used by `shifu eval`)."""
    top_k: int = Field(default=5, ge=1, le=50)
    """Passages given to the model and shown as sources."""
    prompt_passages: int = Field(default=3, ge=0, le=9)
    """How many of the top passages the model reads (all top_k are shown as sources); fewer is faster."""
    dense: bool = True
    """Use the vector index besides full-text search."""
    embedding_model: Path | None = None
    """Local sentence-transformers model directory; empty means the bundled all-MiniLM-L6-v2."""
    reranker_model: Path | None = None
    """Local cross-encoder model directory to re-rank the fused passages (off when empty)."""
    torch_threads: int = Field(default=1, ge=0, le=256)
    """Threads torch may use in the answering process (0: torch's default). One query embeds as fast
    on one thread, and idle torch worker threads spin on the cores llama.cpp needs for decoding."""
    dense_cjk: float = Field(default=0.0, ge=0.0, le=1.0)
    """Weight of the dense ranking for Chinese queries (0 with the English-only default embedder;
    set 1.0 with a multilingual embedding model)."""
    rrf_k: int = Field(default=60, ge=1)
    """Reciprocal-rank-fusion constant."""
    min_score: float = Field(default=0.35, ge=0.0, le=1.0)
    """For an unknown code or a symptom: the best passage's cosine similarity below which nothing counts
    as relevant, and the answer says it is not in the knowledge base instead of generating."""


class KioskSettings(Section):
    scanner_prefix: str = ""
    """Characters a barcode scanner sends before the code; stripped."""
    scanner_suffix: str = ""
    """Characters a barcode scanner sends after the code (before Enter); stripped."""
    kiosk_mode: bool = False
    """When true, Ctrl+C/Ctrl+Q and friends do not leave the app; only technician mode can."""
    technician_idle_s: int = Field(default=300, ge=10)
    """Technician mode logs out after this many idle seconds."""
    pin_lockout_attempts: int = Field(default=5, ge=1)
    """Wrong PINs before technician mode is locked for a while."""
    pin_lockout_s: int = Field(default=300, ge=1)
    """How long technician mode stays locked after too many wrong PINs."""
    high_contrast: bool = False
    """High-contrast theme."""
    machine_id: str = ""
    """Machine this kiosk is fixed to; typed and scanned codes are looked up for its machine model.

    Empty (the default): the operator chooses the machine at the kiosk (an asset-tag scan with
    `machine_prefix`, or F4 and the inventory list); the choice is kept across restarts."""
    machine_prefix: str = "M:"
    """A scanned or typed line starting with this (e.g. `M:CV-01`) chooses the machine instead of asking."""
    operator_prefix: str = "OP:"
    """A scanned or typed line starting with this (e.g. `OP:1234`) signs an operator in instead of asking."""
    alarm_poll_s: float = Field(default=1.0, gt=0, le=60)
    """How often the kiosk looks for new machine alarms in the operational database."""
    critical_flash_s: float = Field(default=10.0, ge=0, le=600)
    """How long a critical code or alarm flashes (it stays red afterwards)."""


class AuditSettings(Section):
    retention_days: int = Field(default=730, ge=1)
    """Audit rows older than this are deleted by `shifu doctor --prune` and at start."""


class BundleSettings(Section):
    """Limits on what a USB bundle may hold; anything beyond is refused before it is used."""

    max_files: int = Field(default=5000, ge=1)
    """Most files in one bundle."""
    max_file_bytes: int = Field(default=16 << 30, ge=1)
    """Largest single file (a 7B GGUF is about 4.7 GB)."""
    max_total_bytes: int = Field(default=32 << 30, ge=1)
    """Largest bundle in total."""
    max_manifest_bytes: int = Field(default=4 << 20, ge=1024)
    """Largest manifest.json."""
    max_signature_bytes: int = Field(default=1024, ge=64)
    """Largest manifest.sig."""
    max_path_chars: int = Field(default=400, ge=16)
    """Longest relative path inside a bundle."""
    max_depth: int = Field(default=12, ge=1)
    """Deepest folder nesting inside a bundle."""


class ServeSettings(Section):
    """`shifu serve`: the engine over HTTP for kiosks on other terminals and the plant's MES."""

    host: str = "127.0.0.1"
    """Address to listen on; anything but loopback needs `token`."""
    port: int = Field(default=8765, ge=1, le=65535)
    """TCP port to listen on."""
    token: str = ""
    """Bearer token every /v1 request must carry (`Authorization: Bearer ...`); required off loopback."""
    max_body_bytes: int = Field(default=65536, ge=1024)
    """Largest request body accepted; bigger requests are refused with 413."""
    warm: bool = True
    """Load the KB and the model when the server starts instead of on the first question."""


class ChromaSettings(Section):
    """Where the vector index lives: embedded files per KB version, or a Chroma server."""

    mode: Literal["embedded", "server"] = "embedded"
    """`embedded`: a Chroma directory inside each KB version; `server`: a Chroma server (`chroma run`)."""
    host: str = "127.0.0.1"
    """Chroma server address (server mode)."""
    port: int = Field(default=8000, ge=1, le=65535)
    """Chroma server port (server mode)."""
    collection_prefix: str = Field(default="shifu", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,30}$")
    """Prefix of the collection names; each KB version gets its own collection."""
    timeout_s: float = Field(default=5.0, gt=0)
    """How long to wait for the Chroma server before search falls back to full-text only."""


# -- network alarm inputs (`shifu intake`) ------------------------------------------------------
def _check_pattern(pattern: str, where: str) -> None:
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"{where} pattern is not a regular expression: {error}") from error
    if "code" not in compiled.groupindex:
        raise ValueError(f"{where} pattern needs a named group `code`: write it as (?P<code>...)")


class MqttSubscription(Section):
    """One topic filter on a broker and how its payloads become alarms."""

    topic: str = Field(min_length=1)
    """Topic filter, MQTT wildcards allowed (`plant/+/alarm`); the alarm's source is `mqtt:` + the actual topic."""
    parser: Literal["json", "regex", "sparkplug"] = "json"
    """`json`: a JSON object read through the `*_field` paths; `regex`: a text payload matched by `pattern`;
    `sparkplug`: Sparkplug B (`spBv1.0/GROUP/NDATA|DDATA/NODE[/DEVICE]`) metrics named in `metrics`."""
    code_field: str = "code"
    """Path to the code in a JSON payload (dotted for nested keys: `alarm.code`)."""
    machine_field: str = "machine"
    """Path to the machine id in a JSON payload; when absent, `machine` is used."""
    message_field: str = "message"
    """Path to the machine's text in a JSON payload (optional)."""
    machine: str = ""
    """Fixed machine id for payloads that name none."""
    pattern: str = ""
    """`regex` parser: a regular expression with named groups `code`, `machine`, `message`, matched on the whole
    (stripped) payload."""
    metrics: dict[str, str] = {}
    """`sparkplug` parser: metric name -> code. A metric that turns true (or non-zero) raises that code; false
    or zero clears it (counted, not stored). An empty code takes the metric's own value as the code (a string
    or integer metric such as `Alarm/Code`; 0 or "" means no alarm). Other metrics are telemetry: ignored."""
    machines: dict[str, str] = {}
    """`sparkplug` parser: device id (DDATA) or edge node id (NDATA) -> machine id. Not in the table: `machine`
    when set, else the device or edge node id itself."""

    @model_validator(mode="after")
    def _pattern_needed(self) -> MqttSubscription:
        if self.parser == "regex":
            _check_pattern(self.pattern, f"mqtt subscription {self.topic!r}")
        if self.parser == "sparkplug":
            if not self.topic.startswith("spBv1.0/"):
                raise ValueError(f"mqtt subscription {self.topic!r}: a sparkplug topic starts with spBv1.0/")
            if not self.metrics:
                raise ValueError(f"mqtt subscription {self.topic!r}: the sparkplug parser needs a `metrics` table")
        return self


class MqttBroker(Section):
    """An MQTT broker (`[[mqtt.brokers]]`): QoS 1, persistent session, acknowledged after the row is committed."""

    host: str
    """Broker address."""
    port: int = Field(default=1883, ge=1, le=65535)
    """Broker port (8883 is usual with TLS)."""
    client_id: str = ""
    """Client id; it names the persistent session, so keep it stable. Empty: `shifu-` + this PC's host name."""
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    """MQTT protocol version."""
    username: str = ""
    """User name, if the broker asks for one."""
    password: str = ""
    """Password for `username`."""
    tls_ca: Path | None = None
    """CA certificate file: turns TLS on and checks the broker's certificate against it."""
    tls_cert: Path | None = None
    """Client certificate file, for brokers that authenticate clients by certificate."""
    tls_key: Path | None = None
    """Private key of `tls_cert`."""
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    """Keep-alive interval; a broker silent for 1.5x this long counts as gone."""
    session_expiry_s: int = Field(default=7 * 86400, ge=0)
    """MQTT 5: how long the broker keeps the session (and queues messages) while Shifu is away."""
    reconnect_min_s: float = Field(default=0.5, gt=0)
    """First wait before reconnecting; doubled on each failure."""
    reconnect_max_s: float = Field(default=30.0, gt=0)
    """Longest wait between reconnect attempts."""
    batch: int = Field(default=200, ge=1, le=10_000)
    """Most messages committed in one transaction before they are acknowledged together."""
    subscriptions: list[MqttSubscription] = []
    """Topics to subscribe to."""


class MqttSettings(Section):
    brokers: list[MqttBroker] = []
    """MQTT brokers to subscribe to (`[[mqtt.brokers]]`)."""


class OpcuaServer(Section):
    """An OPC UA server whose Alarms & Conditions events become alarms (`[[opcua.servers]]`)."""

    endpoint: str = Field(pattern=r"^opc\.tcp://")
    """Endpoint URL, e.g. `opc.tcp://10.0.0.5:4840`; the alarm's source is `opcua:` + it."""
    machine: str = ""
    """Fixed machine id for events whose SourceName is not in `machines`."""
    code_field: str = "ErrorCode"
    """Event field holding the code when the event carries no `ErrorCode` (`ConditionName`, `Message`, a vendor
    property's browse name)."""
    pattern: str = ""
    """A regular expression with named groups `code`, `machine`, `message` applied to `code_field`'s text
    (e.g. to take `E-203` out of a Message); empty: the whole field is the code."""
    machines: dict[str, str] = {}
    """SourceName -> machine id."""
    nodes: list[str] = ["i=2253"]
    """Nodes whose events to subscribe to (default the Server object)."""
    security_policy: Literal["None", "Basic256Sha256"] = "None"
    """`None` for a lab; `Basic256Sha256` for a plant."""
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    """Message security mode; `SignAndEncrypt` for a plant."""
    certificate: Path | None = None
    """This appliance's own certificate (DER or PEM), for Basic256Sha256 and certificate login."""
    private_key: Path | None = None
    """Private key of `certificate`."""
    trusted_certificates: list[Path] = []
    """Server certificates trusted; with security on, any other server is refused."""
    user: str = ""
    """User name for user/password login (empty: anonymous, or `certificate_login`)."""
    certificate_login: bool = False
    """Log in with `certificate` (an X509 identity token, signed with `private_key`) instead of anonymously, for
    servers that map the appliance's certificate to a user. Ignored when `user` is set."""
    password: str = ""
    """Password for `user`."""
    max_field_chars: int = Field(default=1000, ge=16, le=65536)
    """Longest text kept from an event field; longer text is cut (a code longer than 64 characters is unparsed)."""
    reconnect_min_s: float = Field(default=0.5, gt=0)
    """First wait before reconnecting; doubled on each failure."""
    reconnect_max_s: float = Field(default=30.0, gt=0)
    """Longest wait between reconnect attempts."""
    timeout_s: float = Field(default=5.0, gt=0)
    """Request timeout; a server silent this long counts as gone."""
    acknowledge: bool = False
    """When an operator marks an alarm of this server fixed, call its condition's `Acknowledge` method (through
    `shifu intake`). Off by default: Shifu then only reads from the controller."""
    acknowledge_comment: Literal["fixed", "operator"] = "fixed"
    """The acknowledgement's comment: `fixed` sends "Shifu: fixed"; `operator` adds the operator id signed in at
    the kiosk ("Shifu: fixed (operator 1234)"). By default nothing about people leaves the PC."""
    acknowledge_wait_s: float = Field(default=10.0, gt=0, le=120)
    """How long the kiosk waits for the outcome; a request `shifu intake` has not sent by then fails (shown and
    audited, never sent later)."""

    @model_validator(mode="after")
    def _valid_pattern(self) -> OpcuaServer:
        if self.pattern:
            _check_pattern(self.pattern, f"opcua server {self.endpoint!r}")
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError("security_policy and security_mode are both None, or both set")
        if self.certificate_login and (self.certificate is None or self.private_key is None):
            raise ValueError(f"opcua server {self.endpoint!r}: certificate_login needs certificate and private_key")
        if self.security_policy != "None" and not self.trusted_certificates:
            # Encryption with whoever answers is no security: an impostor's certificate would do.
            raise ValueError(f"opcua server {self.endpoint!r}: security_policy {self.security_policy} needs "
                             "trusted_certificates (the controller's certificate files)")
        return self


class OpcuaSettings(Section):
    servers: list[OpcuaServer] = []
    """OPC UA servers to subscribe to (`[[opcua.servers]]`)."""


class Settings(BaseSettings):
    """All of Shifu's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="SHIFU_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    general: GeneralSettings = GeneralSettings()
    model: ModelSettings = ModelSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    kiosk: KioskSettings = KioskSettings()
    serial: SerialSettings = SerialSettings()
    audit: AuditSettings = AuditSettings()
    bundle: BundleSettings = BundleSettings()
    serve: ServeSettings = ServeSettings()
    chroma: ChromaSettings = ChromaSettings()
    mqtt: MqttSettings = MqttSettings()
    opcua: OpcuaSettings = OpcuaSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=paths.config_file())
        return (init_settings, env_settings, toml)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Load and validate settings; raise ConfigError naming every bad key."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(
            f"invalid configuration (file {paths.config_file()}, or SHIFU_* environment):\n"
            f"{_describe(error)}\nFix or remove these keys and start again."
        ) from error
    except ValueError as error:  # malformed TOML or env JSON
        raise ConfigError(
            f"cannot read configuration {paths.config_file()}: {error}"
        ) from error
