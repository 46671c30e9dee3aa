"""The modules whose `@demo_step` functions extend `tandem demo`, in the order they run."""

from __future__ import annotations

import importlib

STEP_MODULES: list[str] = [
    # each domain appends its demo module here, e.g. "tandem.withdrawal.demo"
    "tandem.withdrawal.demo",
    "tandem.medications.demo",
]


def load_steps() -> None:
    for name in STEP_MODULES:
        importlib.import_module(name)
