"""The ``herald`` command line: check, token, and serve refusing a bad config."""

from __future__ import annotations

import json
from pathlib import Path

from herald.tokens import TokenVerifier, VerifierKeys
from tests.support.cli import herald
from tests.support.gateway import TEST_API_KEY as API_KEY
from tests.support.gateway import TEST_SECRET


def write(tmp_path: Path, config: dict[str, object]) -> str:
    path = tmp_path / "herald.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_check_accepts_a_good_config(tmp_path: Path) -> None:
    result = herald("check", "--config", write(tmp_path, {"token_hmac_secret_key": TEST_SECRET, "api_key": API_KEY}))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_check_lists_every_problem_by_key(tmp_path: Path) -> None:
    bad = {
        "token_hmac_secret_key": "short",
        "ping_interval": 25,
        "prot": 8000,
        "namespaces": [{"name": "x", "history_size": 10}],
    }
    result = herald("check", "--config", write(tmp_path, bad))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    text = "\n".join(lines)
    for key in ("token_hmac_secret_key", "ping_interval", "prot", "name", "history_size"):
        assert key in text, (key, text)
    assert 'did you mean "port"' in text
    assert len(lines) >= 5


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    result = herald("check", "--config", str(tmp_path / "nope.json"))
    assert result.returncode == 1 and "cannot read config file" in result.stderr


def test_serve_refuses_a_bad_config_before_listening(tmp_path: Path) -> None:
    result = herald("serve", "--config", write(tmp_path, {"engine": "nats"}))
    assert result.returncode == 1 and "engine" in result.stderr


def test_serve_refuses_a_bad_port(tmp_path: Path) -> None:
    result = herald("serve", "--config", write(tmp_path, {}), "--port", "70000")
    assert result.returncode == 2 and "port must be between 1 and 65535" in result.stderr


def test_token_prints_a_verifiable_connection_token(tmp_path: Path) -> None:
    path = write(tmp_path, {"token_hmac_secret_key": TEST_SECRET})
    result = herald(
        "token",
        "--user",
        "5",
        "--channels",
        "tenant_42,critical:tenant_42",
        "--ttl",
        "600",
        "--config",
        path,
        "--info",
        '{"name":"Ann"}',
    )
    assert result.returncode == 0, result.stderr
    claims = TokenVerifier(VerifierKeys(hmac_secret=TEST_SECRET)).verify_connection(result.stdout.strip())
    assert claims.user == "5" and claims.channels == ("tenant_42", "critical:tenant_42")
    assert claims.info == b'{"name":"Ann"}'


def test_token_needs_an_hmac_secret_and_valid_arguments(tmp_path: Path) -> None:
    path = write(tmp_path, {})
    assert "token_hmac_secret_key is not set" in herald("token", "--user", "5", "--config", path).stderr
    assert herald("token", "--user", "5", "--ttl", "-3", "--config", path).returncode == 2
    assert (
        "--info is not valid JSON"
        in herald(
            "token", "--user", "5", "--info", "{", "--config", write(tmp_path, {"token_hmac_secret_key": TEST_SECRET})
        ).stderr
    )
