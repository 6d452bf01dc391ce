"""Shifu appliance runtime: engine, LLM backends, inputs, UI, CLI and config."""

__version__ = "0.1.0"
