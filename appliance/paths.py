"""Every filesystem location Shifu uses, in one place.

On the appliance: config and trusted keys under `/etc/shifu`, state under `/var/lib/shifu`.
When `SHIFU_HOME` is set (development, tests), all of them live under it. Functions read
the environment on each call so tests can point `SHIFU_HOME` at a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ETC = Path("/etc/shifu")
VAR = Path("/var/lib/shifu")


def home() -> Path | None:
    """The `SHIFU_HOME` directory, or None on a production install."""
    value = os.environ.get("SHIFU_HOME")
    return Path(value).expanduser().resolve() if value else None


def config_dir() -> Path:
    return home() or ETC


def config_file() -> Path:
    """The TOML settings file (`/etc/shifu/shifu.toml` or `$SHIFU_HOME/shifu.toml`)."""
    return config_dir() / "shifu.toml"


def keys_dir() -> Path:
    """Trusted bundle-signing public keys (`*.pub`)."""
    return config_dir() / "keys"


def state_dir() -> Path:
    return home() or VAR


def kb_dir() -> Path:
    return state_dir() / "kb"


def kb_versions_dir() -> Path:
    """One sub-directory per built knowledge-base version (`kb/versions/<n>/`)."""
    return kb_dir() / "versions"


def kb_current_link() -> Path:
    """Symlink to the active version; switched atomically with rename()."""
    return kb_dir() / "current"


def ops_db() -> Path:
    """Operational database: audit log, feedback, alarms, imports."""
    return state_dir() / "ops.sqlite"


def models_toml() -> Path:
    """The model registry."""
    return state_dir() / "models.toml"


def models_dir() -> Path:
    """Model files imported from bundles."""
    return state_dir() / "models"


def staging_dir() -> Path:
    """Internal staging area for bundle imports and KB builds."""
    return state_dir() / "staging"


RUN = Path("/run/shifu-hashes")


def boot_hash_file() -> Path:
    """Model hashes taken this boot by the root step `shifu-model-hash.service` (tmpfs, so a reboot
    empties it; root-owned, so the service accounts only read it); `$SHIFU_HOME/run/` in development."""
    dev = home()
    return (dev / "run" if dev else RUN) / "hashes.json"


def hash_cache() -> Path:
    """The per-boot hash cache a process writes for itself (models.registry.fd_sha256)."""
    return state_dir() / "hashes.json"


def ensure_state() -> Path:
    """Create the state directories that must exist and return the state dir."""
    for directory in (state_dir(), kb_versions_dir(), models_dir(), staging_dir()):
        directory.mkdir(parents=True, exist_ok=True)
    return state_dir()
