"""Settings: TOML file under SHIFU_HOME, env overrides, and errors that name the key."""

from pathlib import Path

import pytest

from appliance import paths
from appliance.config import load_settings
from kb.errors import ConfigError


def test_defaults_without_a_file(home: Path) -> None:
    settings = load_settings()
    assert settings.general.lang == "zh-TW"
    assert paths.config_file() == home / "shifu.toml"
    assert paths.state_dir() == home
    assert paths.keys_dir() == home / "keys"


def test_toml_file_and_env_override(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "shifu.toml").write_text('[general]\nlang = "en"\n[model]\nn_ctx = 2048\n', encoding="utf-8")
    settings = load_settings()
    assert settings.general.lang == "en"
    assert settings.model.n_ctx == 2048
    monkeypatch.setenv("SHIFU_MODEL__N_CTX", "8192")
    assert load_settings().model.n_ctx == 8192


def test_unknown_key_is_named(home: Path) -> None:
    (home / "shifu.toml").write_text("[model]\nn_ctxx = 2048\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "model.n_ctxx" in str(error.value)


def test_bad_value_is_named(home: Path) -> None:
    (home / "shifu.toml").write_text('[general]\nlang = "fr"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "general.lang" in str(error.value)


def test_malformed_toml_is_reported(home: Path) -> None:
    (home / "shifu.toml").write_text("[general\nlang = ", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "shifu.toml" in str(error.value)


def test_cli_reports_bad_config_with_exit_2(home: Path) -> None:
    from click.testing import CliRunner

    from appliance.cli.main import cli

    (home / "shifu.toml").write_text("[retrieval]\ntop_k = 0\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["ask", "A01", "--no-llm"])
    assert result.exit_code == 2
    assert "retrieval.top_k" in result.output
