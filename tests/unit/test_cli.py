"""The ``chorus`` command line, driven through ``main(argv)``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from broker.auth import TokenVerifier
from broker.cli import main
from broker.config import TokenConfig, config_from_mapping

SECRET = "cli-secret-" + "x" * 53


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads CHORUS_* from the environment; start every test without any."""
    for name in list(os.environ):
        if name.startswith("CHORUS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "chorus.yaml"
    assert main(["genconfig", "-o", str(path)]) == 0
    return path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("chorus ") and out.strip() != "chorus"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: chorus" in capsys.readouterr().err


def test_help_has_description_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Centrifugo" in out and "examples:" in out and "chorus serve --config" in out


def test_usage_error_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "eighty"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_genconfig_prints_a_config_that_loads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["genconfig"]) == 0
    config = config_from_mapping(yaml.safe_load(capsys.readouterr().out))
    assert config.client.token.hmac_secret_key


def test_genconfig_writes_a_private_file_and_refuses_to_overwrite(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    before = config_file.read_text()
    assert main(["genconfig", "-o", str(config_file)]) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert config_file.read_text() == before
    assert main(["genconfig", "-o", str(config_file), "--force"]) == 0
    assert config_file.read_text() != before  # fresh secrets


def test_checkconfig_ok_prints_a_summary(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHORUS_HTTP_SERVER_PORT", "9123")
    assert main(["checkconfig", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config OK: http://*:9123, engine memory, token HMAC")
    assert "1 namespace(s) (chat)" in out


def test_checkconfig_warns_when_metrics_have_no_token(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["checkconfig", str(config_file)]) == 0
    assert capsys.readouterr().err == ""  # the starter config has a scrape token
    monkeypatch.setenv("CHORUS_PROMETHEUS_TOKEN", "")
    assert main(["checkconfig", str(config_file)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("config OK: ")
    assert captured.err.startswith("chorus: warning: prometheus.token: not set, so GET "
                                   "/metrics refuses every scrape (401)")


def test_checkconfig_error_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        '{"client": {"insecure": true}, "http_api": {"insecure": true},'
        ' "channel": {"namespaces": [{"name": "chat", "history_size": -1}]}}'
    )
    assert main(["checkconfig", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus: config error: channel.namespaces[0].history_size: ")


def test_serve_reports_config_errors_without_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "chorus: config error:" in capsys.readouterr().err


def test_serve_flags_are_validated_like_config(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "-c", str(config_file), "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "chorus: config error: http_server.port: expected an integer between 0 and 65535, "
        "got 70000\n"
    )


@pytest.mark.parametrize("argv", [
    ["serve"], ["serve", "-c", "a.json", "--port", "9000", "--log-level", "debug"],
    ["serve", "--workers", "3", "--worker-index", "1", "--host", "::1"],
    ["serve", "--port", "x"], ["serve", "--bogus"], ["serve", "--log-level", "loud"],
    ["serve", "--help"]])
def test_the_serve_only_parser_parses_serve_as_the_full_parser_does(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``chorus serve`` builds only the serve subcommand (a faster start): same results,
    same usage errors and help text as with every subcommand."""
    from broker.cli import build_parser

    outcomes = []
    for parser in (build_parser(), build_parser("serve")):
        try:
            outcome: object = vars(parser.parse_args(argv))
        except SystemExit as exc:
            outcome = exc.code
        outcomes.append((outcome, capsys.readouterr()))
    assert outcomes[0] == outcomes[1]
    assert "print an HS256 token" in build_parser().format_help()
    assert "print an HS256 token" not in build_parser("serve").format_help()


def test_serve_reads_chorus_config_env(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHORUS_CONFIG", str(config_file))
    monkeypatch.setenv("CHORUS_LOG_LEVEL", "loud")
    assert main(["serve"]) == 2  # the env var reached load_config through CHORUS_CONFIG's file
    assert 'log.level: expected one of "trace"' in capsys.readouterr().err


def verifier() -> TokenVerifier:
    return TokenVerifier(TokenConfig(hmac_secret_key=SECRET))


def test_gentoken_with_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gentoken", "--secret", SECRET, "--user", "42", "--ttl", "120"]) == 0
    token = verifier().verify_connect(capsys.readouterr().out.strip())
    assert token.user == "42" and token.expire_at is not None


def test_gentoken_subscription_token_without_expiry(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["gentoken", "-s", SECRET, "-u", "7", "--channel", "$room:1", "--ttl", "0"]
    assert main(argv) == 0
    token = verifier().verify_subscribe(capsys.readouterr().out.strip(), channel="$room:1")
    assert (token.user, token.expire_at) == ("7", None)


def test_gentoken_takes_the_secret_from_the_config(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = yaml.safe_load(config_file.read_text())["client"]["token"]["hmac_secret_key"]
    assert main(["gentoken", "-c", str(config_file), "-u", "ann"]) == 0
    token = capsys.readouterr().out.strip()
    assert TokenVerifier(TokenConfig(hmac_secret_key=secret)).verify_connect(token).user == "ann"


def test_gentoken_without_a_secret_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"client": {"insecure": true}, "http_api": {"insecure": true}}')
    assert main(["gentoken", "-c", str(path), "-u", "1"]) == 2
    assert "no HMAC secret" in capsys.readouterr().err


def test_python_dash_m_broker_is_chorus() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "broker", "version"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("chorus ")
