"""Secrets (passwords, tokens) read where the operator put them: an environment variable, a file, or systemd's
credentials. The one reader for the MQTT and KServe passwords and tokens and for camera passwords; the values
are never logged (see :mod:`streamprep.values.redact`)."""

from __future__ import annotations

import os
from pathlib import Path

from streamprep.values.errors import ConfigError


def read_secret(key: str, env: str | None, file: Path | None, credential: str) -> str | None:
    """A secret from an environment variable, a file, or ``$CREDENTIALS_DIRECTORY/credential`` (systemd)."""
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{key}_env: environment variable {env} is not set")
        return value
    path = file
    if path is None and (where := os.environ.get("CREDENTIALS_DIRECTORY")):
        candidate = Path(where) / credential
        path = candidate if candidate.is_file() else None
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}_file: {path}: {exc.strerror or exc}") from None


def read_credential(name: str, key: str) -> str:
    """A systemd credential (``LoadCredential=NAME:FILE`` in the unit), from ``$CREDENTIALS_DIRECTORY``."""
    where = os.environ.get("CREDENTIALS_DIRECTORY")
    if not where:
        raise ConfigError(
            f"{key}: {name!r} needs systemd's credentials (LoadCredential={name}:FILE in the unit); "
            "CREDENTIALS_DIRECTORY is not set"
        )
    path = Path(where.split(":")[0]) / name
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        hint = f" (is LoadCredential={name}:FILE in the unit?)" if isinstance(exc, FileNotFoundError) else ""
        raise ConfigError(f"{key}: {path}: {exc.strerror or exc}{hint}") from None
