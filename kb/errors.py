"""The one error hierarchy of Shifu.

It lives in `kb`, the lowest layer, so that `kb`, `models` and `appliance` can all
raise and catch the same classes. Every message says what happened and what to do.
Errors are turned into exit codes, CLI messages or UI notices only at the edges.
"""

from __future__ import annotations


class ShifuError(Exception):
    """Base of every error Shifu raises on purpose."""

    exit_code = 1


class InputError(ShifuError):
    """The user's input cannot be accepted (empty, too long, control characters)."""

    exit_code = 2


class ConfigError(ShifuError):
    """The configuration file or an environment override is invalid."""

    exit_code = 2


class KBError(ShifuError):
    """The knowledge base cannot be built, opened or searched."""


class SourceError(KBError):
    """A knowledge-base source file is malformed; the message names file, row and column."""


class ModelError(ShifuError):
    """The language model is missing, corrupt, mismatched or failed while generating."""


class BundleError(ShifuError):
    """A USB bundle is unsigned, tampered with, a downgrade, or otherwise refused."""


class SerialError(ShifuError):
    """A serial port cannot be opened or configured."""
