"""What a patient reads: plain language written for them, held as data (a domain's
`data/patient/*.yaml`), validated on load. Clinical statements carry their source, the same
`Source` the clinician's data files use; explanations of how the program works need none.

Shared kernel: the withdrawal and medication views for patients read their text here.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tandem.evidence import Source


class PlainText(BaseModel):
    """One passage for patients: short sentences, no codes, no rule names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=10, max_length=600)
    clinical: bool = False
    source: Source | None = None

    @model_validator(mode="after")
    def _sourced(self) -> PlainText:
        if self.clinical and self.source is None:
            raise ValueError("a clinical statement for patients needs its source")
        return self


@cache
def plain_language(package: str, name: str) -> dict[str, PlainText]:
    """The passages of `<package>/data/patient/<name>.yaml`, by key; invalid data fails loudly."""
    text = resources.files(package).joinpath(f"data/patient/{name}.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ValueError(f"{package} data/patient/{name}.yaml must map keys to passages")
    return {str(key): PlainText.model_validate(entry) for key, entry in raw.items()}
