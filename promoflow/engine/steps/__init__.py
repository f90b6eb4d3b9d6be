"""The promotion steps: one module each, registered by name; `ORDER` is the way a promotion walks them.

A step reads the promotion through its context and returns a result (`promoflow.engine.results`); it is
idempotent and keyed by the promotion, so running it again after a crash finds what it already did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from promoflow.engine.context import Context
    from promoflow.engine.results import StepResult


class Step(Protocol):
    name: ClassVar[str]
    output: ClassVar[type[BaseModel]]

    def applies(self, ctx: Context) -> bool:
        """Whether this promotion takes this step at all (no change prepared: nothing to request or merge)."""
        ...

    def run(self, ctx: Context) -> StepResult: ...


REGISTRY: dict[str, Step] = {}
ORDER = ("preflight", "prepare", "open_request", "approval", "merge", "apply", "verify", "finalize")


def register(step: type[Step]) -> type[Step]:
    """Class decorator: make the step known by its name."""
    REGISTRY[step.name] = step()
    return step


def load() -> dict[str, Step]:
    """Every step of ORDER, its module imported (each registers itself)."""
    from importlib import import_module

    for name in ORDER:
        if name not in REGISTRY:
            import_module(f"promoflow.engine.steps.{name}")
    return REGISTRY
