"""``herald genconfig`` and ``herald check`` as an operator meets them: a starter file that passes
the check, v6 files recognised, configs that could serve nobody refused, short keys warned about."""

from __future__ import annotations

import json
import stat
import tomllib
from dataclasses import fields, replace
from pathlib import Path

from herald.gateway.config import MIN_HMAC_SECRET_BYTES, Config, load_config
from tests.support.cli import herald
from tests.support.gateway import TEST_API_KEY, TEST_SECRET


def genconfig(tmp_path: Path, name: str, *args: str) -> Path:
    path = tmp_path / name
    result = herald("genconfig", "--output", str(path), *args)
    assert result.returncode == 0, result.stderr
    assert f"herald check --config {path}" in result.stderr
    return path


def test_genconfig_writes_a_file_that_passes_the_check_in_either_format(tmp_path: Path) -> None:
    v5 = genconfig(tmp_path, "v5.toml")
    v6 = genconfig(tmp_path, "v6.toml", "--format", "v6")
    for path, layout in ((v5, "v5"), (v6, "v6")):
        check = herald("check", "--config", str(path))
        assert check.returncode == 0, check.stderr
        assert check.stderr == ""  # not even a warning
        assert f"{path}: read a Centrifugo {layout} configuration" in check.stdout
        assert f"{path}: configuration is valid\n" in check.stdout
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the secret
        assert path.read_text().count("\n# ") >= 10, "a starter file explains itself"
    # The two layouts say the same thing, except for their random credentials.
    a, b = load_config(v5, {})[0], load_config(v6, {})[0]
    for config in (a, b):
        assert len(config.token_hmac_secret_key.encode()) >= MIN_HMAC_SECRET_BYTES
        assert len(config.api_key.encode()) >= 32
    assert a.token_hmac_secret_key != b.token_hmac_secret_key and a.api_key != b.api_key
    b = replace(b, token_hmac_secret_key=a.token_hmac_secret_key, api_key=a.api_key)
    for f in fields(Config):
        assert getattr(a, f.name) == getattr(b, f.name), f.name
    assert a.namespaces["critical"].force_recovery and a.namespaces["critical"].history_enabled


def test_genconfig_to_standard_output_is_toml(tmp_path: Path) -> None:
    result = herald("genconfig", "--format", "v6")
    assert result.returncode == 0, result.stderr
    data = tomllib.loads(result.stdout)
    assert len(data["client"]["token"]["hmac_secret_key"]) >= MIN_HMAC_SECRET_BYTES
    assert list(tmp_path.iterdir()) == []


def test_genconfig_never_overwrites_without_force(tmp_path: Path) -> None:
    path = genconfig(tmp_path, "herald.toml")
    before = path.read_text()
    again = herald("genconfig", "--output", str(path))
    assert again.returncode == 1
    assert f"error: {path} already exists; pass --force to overwrite it" in again.stderr
    assert path.read_text() == before
    genconfig(tmp_path, "herald.toml", "--force")
    after = path.read_text()
    assert after != before, "--force writes a new file with new credentials"
    assert tomllib.loads(after)["token_hmac_secret_key"] != tomllib.loads(before)["token_hmac_secret_key"]


def test_genconfig_refuses_a_name_herald_would_not_read_as_toml(tmp_path: Path) -> None:
    result = herald("genconfig", "--output", str(tmp_path / "herald.json"))
    assert result.returncode == 1 and "name the file *.toml" in result.stderr
    assert not (tmp_path / "herald.json").exists()
    bad_format = herald("genconfig", "--format", "v7")
    assert bad_format.returncode == 2 and "invalid choice: 'v7'" in bad_format.stderr


def test_check_without_a_config_says_no_client_could_connect(tmp_path: Path) -> None:
    result = herald("check", cwd=str(tmp_path))
    assert result.returncode == 1
    assert "no --config given: read the defaults and HERALD_* environment variables" in result.stdout
    assert "configuration is valid" not in result.stdout
    assert "error: defaults: no client could connect" in result.stderr
    assert "HERALD_TOKEN_HMAC_SECRET_KEY" in result.stderr
    # The same defaults with a secret from the environment can serve clients.
    ok = herald("check", env={"HERALD_TOKEN_HMAC_SECRET_KEY": TEST_SECRET, "HERALD_API_KEY": TEST_API_KEY})
    assert ok.returncode == 0, ok.stderr
    assert "defaults: configuration is valid" in ok.stdout


def test_check_counts_warnings_and_warns_about_a_short_api_key(tmp_path: Path) -> None:
    path = tmp_path / "herald.json"
    path.write_text(json.dumps({"token_hmac_secret_key": TEST_SECRET, "api_key": "k"}))
    result = herald("check", "--config", str(path))
    assert result.returncode == 0
    assert "warning: api_key: only 1 bytes; use a random key of at least 32 bytes" in result.stderr
    assert f"{path}: configuration is valid (1 warning above)" in result.stdout


def test_check_names_the_v6_keys_herald_does_not_support(tmp_path: Path) -> None:
    path = tmp_path / "herald.json"
    good = {"client": {"token": {"hmac_secret_key": TEST_SECRET}}, "http_api": {"key": TEST_API_KEY}}
    bad = {
        "client": {"token": {"hmac_secret_key": TEST_SECRET, "jwks_public_endpoint": "https://example.com/jwks"}},
        "http_api": {"key": TEST_API_KEY},
        "grpc_api": {"enabled": True},
    }
    path.write_text(json.dumps(bad))
    result = herald("check", "--config", str(path))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: client.token.jwks_public_endpoint: a Centrifugo v6 option Herald does not support; remove it",
        "error: grpc_api: a Centrifugo v6 option Herald does not support; remove it",
    ]
    path.write_text(json.dumps(good))
    fixed = herald("check", "--config", str(path))
    assert fixed.returncode == 0, fixed.stderr
    assert f"{path}: read a Centrifugo v6 configuration (nested sections)" in fixed.stdout


def test_token_without_a_secret_says_where_to_put_one(tmp_path: Path) -> None:
    result = herald("token", "--user", "5", cwd=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("error: token_hmac_secret_key is not set (no --config given)")
    assert "--config FILE" in result.stderr and "HERALD_TOKEN_HMAC_SECRET_KEY" in result.stderr
    from_env = herald("token", "--user", "5", env={"HERALD_TOKEN_HMAC_SECRET_KEY": TEST_SECRET})
    assert from_env.returncode == 0 and from_env.stdout.count(".") == 2, from_env.stderr  # a JWT
