"""Tables for people: they fit the terminal without breaking a word, and piped they keep each row on one line."""

from __future__ import annotations

import os

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

PIPED_MAX_WIDTH = 1000


def table(title: str, *columns: str, whole: tuple[str, ...] = (), caption: str | None = None) -> Table:
    """A compact table. `whole` columns (ids, names, states) are never wrapped; the others wrap at spaces."""
    shown = Table(
        title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0)
    )
    for column in columns:
        shown.add_column(column, no_wrap=column in whole, overflow="ellipsis")
    return shown


def show(console: Console, shown: Table) -> None:
    """At a terminal, or with $COLUMNS, the table fits that width; piped without it, as wide as its rows need."""
    natural = _natural_width(console, shown)
    if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        if natural > console.width:
            shown.padding = (0, 0, 0, 0)  # squeezed: one space between columns
            natural = _natural_width(console, shown)
        _fit(console, shown, natural)
        console.print(shown)
        return
    width = console.width
    console.width = max(width, natural)  # print() never goes wider than the console
    try:
        console.print(shown)
    finally:
        console.width = width


def _natural_width(console: Console, shown: Table) -> int:
    return console.measure(shown, options=console.options.update(width=PIPED_MAX_WIDTH)).maximum


def _fit(console: Console, shown: Table, natural: int) -> None:
    """Give each column at least its longest word (whole columns: their longest value) when all of them fit the
    console, sharing the rest by what each would still like. Rich alone shrinks columns below their words and
    breaks them ("stagin g"); when even the words do not fit, it cuts them with '…'."""
    spans = []
    for column in shown.columns:
        measured = [Measurement.get(console, console.options, cell) for cell in (column.header, *column.cells)]
        longest = max(m.maximum for m in measured)
        spans.append((longest if column.no_wrap else max(m.minimum for m in measured), longest))
    available = console.width - (natural - sum(longest for _, longest in spans))  # less padding and dividers
    least = sum(minimum for minimum, _ in spans)
    if sum(longest for _, longest in spans) <= available or least > available:
        return
    wanted = [longest - minimum for minimum, longest in spans]
    extra = available - least
    shares = [extra * want // sum(wanted) for want in wanted]
    for index in sorted(range(len(spans)), key=lambda i: -wanted[i])[: extra - sum(shares)]:
        shares[index] += 1  # what the rounding left, to the columns that want the most
    for column, (minimum, _), share in zip(shown.columns, spans, shares, strict=True):
        column.width = minimum + share
