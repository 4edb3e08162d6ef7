"""Config rules for the admin web UI (``admin``, ``admin_password``, ``admin_secret``).

Called from ``config.parse_config`` like the other cross-key checks; kept here so the admin UI's
rules live with it. Imports nothing from the web server: the config parser stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from herald.gateway.config import Config

# decisions §4: the minimum for every HMAC secret (config.MIN_HMAC_SECRET_BYTES, not imported
# from there: config imports this module).
MIN_SECRET_BYTES: Final = 32

ADMIN_PATH: Final = "/admin"  # where the UI lives
ADMIN_PASSWORD_MIN_CHARS: Final = 12
ADMIN_PASSPHRASE_CHARS: Final = 20  # this long, two kinds of character are enough
ADMIN_PASSWORD_MIN_DISTINCT: Final = 6


def admin_password_problem(password: str) -> str | None:
    """Why a password is too weak for the admin UI, or None: it guards every server API method."""
    if len(password) < ADMIN_PASSWORD_MIN_CHARS:
        return f"must be at least {ADMIN_PASSWORD_MIN_CHARS} characters, got {len(password)}"
    if len(set(password)) < ADMIN_PASSWORD_MIN_DISTINCT:
        return f"too simple: only {len(set(password))} different characters"
    kinds = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if kinds < 3 and len(password) < ADMIN_PASSPHRASE_CHARS:
        return (
            "too simple: mix at least three of lowercase, uppercase, digits and symbols, "
            f"or use a passphrase of {ADMIN_PASSPHRASE_CHARS} characters or more"
        )
    return None


def check_admin(
    config: Config, bad: set[str], label: Callable[[str], str], problems: list[str], warnings: list[str]
) -> None:
    """The admin UI runs every server API method: with ``admin`` on, refuse a guessable password
    and a short session secret (decisions §4 applies the same rule to token secrets). Called by
    the config parser with its helpers: ``label`` names a key as the user set it."""
    if not config.admin:
        for key in ("admin_password", "admin_secret"):
            if getattr(config, key) and key not in bad:
                warnings.append(f"{label(key)}: set but admin is false, so the admin web UI is off")
        return
    if "admin_password" not in bad:
        if not config.admin_password:
            problems.append(f"{label('admin_password')}: required when admin is true")
        elif problem := admin_password_problem(config.admin_password):
            problems.append(f"{label('admin_password')}: {problem}")
        elif config.admin_password in {config.admin_secret, *_secrets(config)}:
            problems.append(f"{label('admin_password')}: must differ from admin_secret, the API keys and token secrets")
    if "admin_secret" not in bad:
        size = len(config.admin_secret.encode())
        if not config.admin_secret:
            problems.append(f"{label('admin_secret')}: required when admin is true (it signs admin sessions)")
        elif size < MIN_SECRET_BYTES:
            problems.append(f"{label('admin_secret')}: must be at least {MIN_SECRET_BYTES} bytes, got {size}")
        elif config.admin_secret in _secrets(config):
            problems.append(f"{label('admin_secret')}: must differ from the API keys and token secrets")
    # The admin UI owns /admin: a client transport or the API there would shadow it.
    for key in [f.name for f in fields(config) if f.name.endswith("_handler_prefix")]:
        path = str(getattr(config, key)).rstrip("/")
        if key not in bad and (path == ADMIN_PATH or path.startswith(ADMIN_PATH + "/")):
            problems.append(f"{label(key)}: {ADMIN_PATH} belongs to the admin web UI while admin is true")


def _secrets(config: Config) -> set[str]:
    """Every other credential in the config (empty ones left out)."""
    keys = {config.api_key, config.token_hmac_secret_key}
    keys.update(scoped.key for scoped in (*config.api_keys, *config.token_hmac_secret_keys))
    keys.discard("")
    return keys
