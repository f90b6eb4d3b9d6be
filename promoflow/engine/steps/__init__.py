"""The promotion steps: one module each, registered by name; `ORDER` is the way a promotion walks them.

A step reads the promotion through its context and returns a result (`promoflow.engine.results`); it is
idempotent and keyed by the promotion, so running it again after a crash finds what it already did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from promoflow.engine.context import Context
    from promoflow.engine.results import StepResult


class Step(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def output(self) -> type[BaseModel]:
        """The model of what the step leaves for later steps (recorded as its detail)."""
        ...

    def applies(self, ctx: Context) -> bool:
        """Whether this promotion takes this step at all (no change prepared: nothing to request or merge)."""
        ...

    def run(self, ctx: Context) -> StepResult: ...


REGISTRY: dict[str, Step] = {}
ORDER = ("preflight", "prepare", "open_request", "approval", "entry", "merge", "apply", "verify", "finalize")


def register(step: type[Step]) -> type[Step]:
    """Class decorator: make the step known by its name."""
    instance = step()
    REGISTRY[instance.name] = instance
    return step


def load() -> dict[str, Step]:
    """Every step of ORDER, its module imported (each registers itself)."""
    from importlib import import_module

    for name in ORDER:
        if name not in REGISTRY:
            import_module(f"promoflow.engine.steps.{name}")
    return REGISTRY
