"""Evidence: one model of a cited source, used by every data file (instruments, protocols,
monographs). A fact without a confirmed source says so (`unverified` with a `note`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# primary = original paper, label or registry; secondary = guideline, review, professional
# site; tertiary = calculator, vendor, blog; code = third-party source code (weakest);
# tandem = Tandem's own decision (a placeholder to be set by the program); none = no source.
Quality = Literal["primary", "secondary", "tertiary", "code", "tandem", "none"]


class Source(BaseModel):
    """One citation, as the fact sheet or the data file gives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    citation: str = Field(min_length=5)
    id: str | None = None
    url: str | None = None
    doi: str | None = None
    pmid: str | None = None
    quality: Quality | None = None
    unverified: bool = False
    note: str | None = None

    @model_validator(mode="after")
    def _checked(self) -> Source:
        name = f"source {self.id}" if self.id else "a source"
        if self.unverified and not self.note:
            raise ValueError(f"{name}: unverified needs a note saying what is unconfirmed")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"{name}: url must be http(s), got {self.url!r}")
        return self
