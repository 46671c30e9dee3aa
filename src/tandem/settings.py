"""Settings from the environment (TANDEM_*), validated once at start: a bad value stops start-up."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tandem.access.keystore import Sealer, sealer


@lru_cache(maxsize=8)
def cached_sealer(secret: str, key_file: str) -> Sealer:
    return sealer(secret, key_file)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///tandem.db",
        description="sqlite:///PATH (embedded) or postgresql+psycopg://USER@HOST:PORT/DB",
    )
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # However active, a person signs in again this long after signing in.
    session_absolute_hours: int = Field(default=12, ge=1, le=24 * 30)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    # A failed password's answer waits this long, doubling with each earlier failure of that
    # account from that address (at most 8 times as long).
    login_slowdown_ms: int = Field(default=250, ge=0, le=5000)
    cookie_secure: bool = True
    # How many reverse proxies stand in front of Tandem: the client address is the entry this many
    # from the right of X-Forwarded-For (each proxy appends the address it saw). 0: the header is
    # ignored. The old TANDEM_TRUST_FORWARDED_FOR=true reads as 1.
    trusted_proxies: int = Field(default=0, ge=0, le=10)
    trust_forwarded_for: bool = False
    # The largest request body read (JSON, forms), in bytes; larger ones get 413 unread.
    max_body_bytes: int = Field(default=1_000_000, ge=1_000)
    # Posts of the public "Ask a counselor" form allowed per client address and hour.
    ask_max_per_hour: int = Field(default=5, ge=1, le=10_000)
    # Send Strict-Transport-Security (only when Tandem itself is reached over TLS, or the proxy
    # in front does not set it; see the README).
    hsts: bool = False
    # Validate every FHIR resource Tandem sends against fhir.resources (the tests do; costly).
    validate_fhir_output: bool = False
    # Run the scheduled jobs (overdue and missed-dose sweeps) inside each `tandem serve` worker.
    # Off (`tandem serve --no-jobs`) when a separate `tandem worker` runs them.
    serve_jobs: bool = True
    # Reminder e-mails (check-in, dose and session reminders of the patient portal) go through
    # this SMTP server; no host, no e-mail (reminders are shown in the app only).
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = ""
    # STARTTLS before signing in (off only for a relay on the same host or a test server).
    smtp_starttls: bool = True
    # The secret that seals Tandem's private signing keys in the database (tandem.access.keystore):
    # the secret itself, or a file holding it (mode 600). Neither: a file Tandem makes in its
    # user's state directory.
    key_secret: SecretStr = SecretStr("")
    key_file: str = ""
    # SMART token endpoint: failed client authentications and refused grants allowed per app
    # from one address within the window (four times as many per address, and per app).
    token_max_failures: int = Field(default=10, ge=1)
    token_window_minutes: int = Field(default=15, ge=1)

    @field_validator("database_url")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith("postgresql+psycopg://")):
            raise ValueError(
                "TANDEM_DATABASE_URL must start with sqlite:/// or postgresql+psycopg:// "
                f"(got {value.split(':', 1)[0]!r})"
            )
        return value

    @model_validator(mode="after")
    def _smtp_sender(self) -> Settings:
        if self.smtp_host and "@" not in self.smtp_from:
            raise ValueError(
                "TANDEM_SMTP_FROM must be an e-mail address when TANDEM_SMTP_HOST is set"
            )
        return self

    @model_validator(mode="after")
    def _key_secret_usable(self) -> Settings:
        """A configured key secret or key file is checked at start (the default file is made
        when first needed)."""
        if self.key_secret.get_secret_value() or self.key_file:
            self.sealer()
        return self

    def sealer(self) -> Sealer:
        return cached_sealer(self.key_secret.get_secret_value(), self.key_file)

    @model_validator(mode="before")
    @classmethod
    def _legacy_forwarded_for(cls, data: Any) -> Any:
        """TANDEM_TRUST_FORWARDED_FOR=true (one proxy) still works; TANDEM_TRUSTED_PROXIES wins."""
        if isinstance(data, dict):
            legacy = str(data.get("trust_forwarded_for", "")).strip().lower()
            if legacy in ("1", "true", "yes", "on") and data.get("trusted_proxies") in (None, ""):
                data = {**data, "trusted_proxies": 1}
        return data

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
