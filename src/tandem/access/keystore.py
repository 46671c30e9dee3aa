"""The secret that seals Tandem's private keys (the id_token signing keys), kept outside the
database so that a copy of the database or a backup alone does not give them away.

Where the secret comes from, first found wins:

1. `TANDEM_KEY_SECRET`: the secret itself (at least 32 characters), e.g. from a secrets manager;
2. `TANDEM_KEY_FILE`: a file holding it, readable by Tandem's user only (refused otherwise);
3. neither: a file Tandem makes on first use in its user's state directory
   (`$XDG_STATE_HOME/tandem/key-secret`, else `~/.local/state/tandem/key-secret`), mode 0600.

A sealed value is AES-256-GCM under a key derived from the secret (HKDF-SHA256), with the key's
id as associated data (a sealed key cannot be passed off under another id):
`sealed:v1:<base64url(nonce | ciphertext)>`. A value sealed under another secret does not open
(`None`): Tandem then makes a new signing key and keeps publishing the old public half until its
id_tokens have expired.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "sealed:v1:"
MIN_SECRET_LENGTH = 32
_INFO = b"tandem signing keys v1"


class KeySecretError(ValueError):
    """The configured secret cannot be used (too short, unreadable, readable by others)."""


@dataclass(frozen=True)
class Sealer:
    """Seals and opens private keys with one secret."""

    key: bytes  # 32 bytes, derived
    source: str  # where the secret came from, for the operator (never the secret)

    @classmethod
    def from_secret(cls, secret: str, source: str) -> Sealer:
        secret = secret.strip()
        if len(secret) < MIN_SECRET_LENGTH:
            raise KeySecretError(
                f"{source}: the key secret must be at least {MIN_SECRET_LENGTH} characters"
            )
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
            secret.encode()
        )
        return cls(derived, source)

    def seal(self, plaintext: str, kid: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext.encode(), kid.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str, kid: str) -> str | None:
        """The plaintext, or None if it was sealed under another secret (or is damaged)."""
        if not value.startswith(PREFIX):
            return None
        body = value[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return AESGCM(self.key).decrypt(raw[:12], raw[12:], kid.encode()).decode()
        except (ValueError, InvalidTag):
            return None


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def default_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "tandem" / "key-secret"


def _read_private(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeySecretError(f"TANDEM_KEY_FILE {path} is readable by others: chmod 600 {path}")
        return path.read_text()
    except OSError as exc:
        raise KeySecretError(f"TANDEM_KEY_FILE {path}: {exc.strerror or exc}") from None


def _made(path: Path) -> str:
    """The secret in `path`, made (random, mode 0600) if the file does not exist yet; two
    processes making it at once agree (the first one's file wins)."""
    try:
        return _read_private(path)
    except KeySecretError:
        if path.exists():
            raise
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_private(path)
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_urlsafe(48) + "\n")
    return _read_private(path)


def sealer(secret: str, key_file: str) -> Sealer:
    """The sealer for these settings (TANDEM_KEY_SECRET, TANDEM_KEY_FILE); see the module."""
    if secret.strip():
        return Sealer.from_secret(secret, "TANDEM_KEY_SECRET")
    if key_file.strip():
        path = Path(key_file).expanduser()
        return Sealer.from_secret(_read_private(path), f"TANDEM_KEY_FILE {path}")
    path = default_file()
    return Sealer.from_secret(_made(path), f"key file {path}")
