"""Copy model files (base GGUF, LoRA GGUF adapters) from a verified bundle into the models folder.

Files are written under a temporary name, fsynced and renamed, so a crash leaves either no
file or a complete one. The registry itself is updated by the caller (it lives in `models`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from kb.bundle.manifest import ModelPayload
from kb.bundle.verify import VerifiedBundle


@dataclass(frozen=True)
class InstalledModel:
    spec: ModelPayload
    path: Path
    sha256: str


def install_model_files(bundle: VerifiedBundle, models_dir: Path) -> list[InstalledModel]:
    models_dir.mkdir(parents=True, exist_ok=True)
    installed = []
    for spec in bundle.manifest.models:
        entry = bundle.manifest.file(spec.path)
        assert entry is not None  # parse_manifest checked that every model file is listed
        suffix = Path(spec.path).suffix or ".gguf"
        final = models_dir / f"{spec.id}-{entry.sha256[:12]}{suffix}"
        if not final.exists():
            tmp = models_dir / f".{final.name}.{os.getpid()}.part"
            with open(bundle.root / spec.path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, final)
        installed.append(InstalledModel(spec=spec, path=final, sha256=entry.sha256))
    return installed
