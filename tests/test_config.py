"""Settings: defaults, a TOML file, environment overrides, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from evorec.platform.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("EVOREC_"):
            monkeypatch.delenv(name)


def test_defaults_give_each_service_its_own_ports() -> None:
    settings = load_settings()
    assert [
        settings.endpoint(n).target for n in ("preprocess", "embedding", "interest", "ranking")
    ] == [
        "127.0.0.1:50051",
        "127.0.0.1:50052",
        "127.0.0.1:50053",
        "127.0.0.1:50054",
    ]
    assert settings.ranking.metrics_port == 9104


def test_one_nested_variable_overrides_one_field_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVOREC_RANKING__PORT", "6000")
    monkeypatch.setenv("EVOREC_SERVER__GRACE_PERIOD_S", "2.5")
    settings = load_settings()
    assert settings.ranking.port == 6000
    assert settings.ranking.metrics_port == 9104
    assert settings.server.grace_period_s == 2.5
    assert settings.server.max_concurrent_rpcs == 1000


def test_the_file_is_read_and_the_environment_wins_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "evorec.toml"
    path.write_text(
        'log_level = "DEBUG"\n[interest]\nport = 7000\n[client]\ndefault_timeout_s = 1.5\n'
    )
    monkeypatch.setenv("EVOREC_CONFIG_FILE", str(path))
    monkeypatch.setenv("EVOREC_INTEREST__PORT", "7001")
    settings = load_settings()
    assert settings.log_level == "DEBUG"
    assert settings.client.default_timeout_s == 1.5
    assert settings.interest.port == 7001
    assert settings.interest.metrics_port == 9103


def test_a_bad_value_is_named_in_both_spellings(tmp_path: Path) -> None:
    path = tmp_path / "evorec.toml"
    path.write_text("[ranking]\nport = 70000\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    message = str(raised.value)
    assert message.startswith("invalid setting EVOREC_RANKING__PORT (or ranking.port in ")
    assert "less than or equal to 65535" in message


def test_an_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "evorec.toml"
    path.write_text("[server]\ngrace_period = 3\n")
    with pytest.raises(ConfigError, match=r"EVOREC_SERVER__GRACE_PERIOD .*Extra inputs"):
        load_settings(path)


def test_a_missing_or_malformed_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


def test_an_invalid_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOREC_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match=r"invalid setting EVOREC_LOG_FORMAT: .*'json' or 'text'"):
        load_settings()


def test_core_queue_limits_out_of_order_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOREC_SERVER__MAX_PENDING_SOFT", "10")
    monkeypatch.setenv("EVOREC_SERVER__MAX_PENDING", "5")
    named = r"MAX_PENDING_SOFT \(server.max_pending_soft\), 10, is above"
    with pytest.raises(ConfigError, match=named):
        load_settings()
