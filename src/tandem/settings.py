"""Settings from the environment (TANDEM_*), validated once at start: a bad value stops start-up."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///tandem.db",
        description="sqlite:///PATH (embedded) or postgresql+psycopg://USER@HOST:PORT/DB",
    )
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    cookie_secure: bool = True
    trust_forwarded_for: bool = False
    # The largest request body read (JSON, forms), in bytes; larger ones get 413 unread.
    max_body_bytes: int = Field(default=1_000_000, ge=1_000)
    # Send Strict-Transport-Security (only when Tandem itself is reached over TLS, or the proxy
    # in front does not set it; see the README).
    hsts: bool = False
    # Validate every FHIR resource Tandem sends against fhir.resources (the tests do; costly).
    validate_fhir_output: bool = False

    @field_validator("database_url")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith("postgresql+psycopg://")):
            raise ValueError(
                "TANDEM_DATABASE_URL must start with sqlite:/// or postgresql+psycopg:// "
                f"(got {value.split(':', 1)[0]!r})"
            )
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
