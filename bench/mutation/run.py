"""Mutation testing of the modules that decide things: one-line mutants, each run against the tests that cover
its module, within a time budget. Results per module (killed, survived, score, the survivors) in results.md and
results.json beside this file.

Self-contained (no mutmut: it copies the project into `mutants/` and runs the whole suite for its statistics; we
want each module's own fast tests and nothing else). A mutant is one change of one AST node: a comparison flipped
(`<` to `<=`, `==` to `!=`, `in` to `not in`, ...), `and`/`or` swapped, a `not` dropped, an integer constant moved
by one, a boolean constant negated, `+`/`-` swapped, a `return x` of a condition negated. The module's file is
rewritten with the mutant (its bytecode never written), the tests run with `-x`, and the file is restored byte
for byte and its mtime kept, whatever happens. A mutant is killed when the tests fail or exceed the timeout
(three times the unmutated run, at least 20 s).

    scripts/mutation                      # every module
    scripts/mutation approvals redact     # some, by key
    scripts/mutation --budget 600         # seconds per module; mutants not reached are counted as not run
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402

HERE = Path(__file__).resolve().parent
Emit = Callable[[ast.AST, str, Callable[[], None], Callable[[], None]], None]  # node, change, apply, undo


@dataclass(frozen=True)
class Target:
    """A module to mutate and the fast tests that cover it (no Prefect server; a cluster only as the stand-in)."""

    file: str
    tests: list[str]
    # Only these functions (and what they nest) of a large module: the part that decides, not its plumbing.
    functions: tuple[str, ...] = ()


MODULES: dict[str, Target] = {
    "approvals": Target(
        "promoflow/approvals.py", ["tests/unit/test_approvals.py", "tests/test_approvals.py", "-m", "not prefect"]
    ),
    "states": Target("promoflow/engine/states.py", ["tests/unit/test_engine_states.py"]),
    "redact": Target("promoflow/redact.py", ["tests/unit/test_redact.py"]),
    "secrets": Target("promoflow/secrets.py", ["tests/test_secrets.py", "-k", "not prefect_secret_block"]),
    "semver": Target(
        "promoflow/sources/semver.py", ["tests/test_semver.py", "tests/unit/test_tag_policy.py", "-k", "not 100k"]
    ),
    "tag-policy": Target(
        "promoflow/sources/policy.py", ["tests/test_policy.py", "tests/unit/test_tag_policy.py", "-k", "not images_"]
    ),
    "webhook-auth": Target(
        "promoflow/webhooks.py",
        [
            "tests/test_webhooks.py",
            "-m",
            "not prefect",
            "-k",
            "signature or secret or auth or bearer or token or unverified or delivery_id",
        ],
        functions=("_same", "registry", "dockerhub", "github", "harbor"),
    ),
    "apply-conflicts": Target(
        "promoflow/clusters/kubernetes.py",
        ["tests/unit/test_api_errors.py", "tests/test_clusters_kubernetes.py", "-k", "not real"],
        functions=("_api_error", "_apply_one", "apply"),
    ),
}

_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_SYMBOL = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}


@dataclass
class Mutant:
    line: int
    change: str
    outcome: str = "not run"  # killed | survived | timeout | not run
    seconds: float = 0.0


@dataclass
class ModuleResult:
    module: str
    file: str
    tests: list[str]
    baseline_seconds: float
    mutants: list[Mutant] = field(default_factory=list)

    @property
    def killed(self) -> int:
        return sum(m.outcome in ("killed", "timeout") for m in self.mutants)

    @property
    def survived(self) -> list[Mutant]:
        return [m for m in self.mutants if m.outcome == "survived"]

    @property
    def run(self) -> int:
        return sum(m.outcome != "not run" for m in self.mutants)

    @property
    def score(self) -> float:
        return round(100 * self.killed / self.run, 1) if self.run else 0.0


def _docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def _annotations(tree: ast.Module) -> set[int]:
    """ids of nodes inside annotations and `TYPE_CHECKING` blocks: mutating them changes nothing at run time."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        parts: list[ast.AST | None] = []
        if isinstance(node, ast.AnnAssign):
            parts.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(node.returns)
            parts.extend(a.annotation for a in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs])
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            parts.append(node)
        for part in parts:
            if part is not None:
                skip.update(id(n) for n in ast.walk(part))
    return skip


def _within(tree: ast.AST, functions: tuple[str, ...]) -> list[ast.AST]:
    """The nodes of the named functions (at any depth), or every node when none are named."""
    if not functions:
        return list(ast.walk(tree))
    named = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name in functions]
    missing = set(functions) - {n.name for n in named}
    if missing:
        raise SystemExit(f"no function {', '.join(sorted(missing))} to mutate: fix MODULES in {Path(__file__).name}")
    return [node for function in named for node in ast.walk(function)]


def mutants(source: str, functions: tuple[str, ...] = ()) -> list[tuple[Mutant, str]]:
    """Every one-node mutant of `source` (of its named functions only, if any): (what changed, the mutated source)."""
    found: list[tuple[Mutant, str]] = []
    tree = ast.parse(source)
    nodes = _within(tree, functions)
    skip = _annotations(tree) | {id(n) for n in nodes if getattr(n, "lineno", 0) in _docstring_lines(tree)}

    def emit(node: ast.AST, change: str, apply: Callable[[], None], undo: Callable[[], None]) -> None:
        apply()
        try:
            found.append((Mutant(getattr(node, "lineno", 0), change), ast.unparse(tree)))
        finally:
            undo()

    for node in nodes:
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _FLIP:
                    new = _FLIP[type(op)]()

                    def put(i: int = i, op: ast.cmpop = new, n: ast.Compare = node) -> None:
                        n.ops[i] = op

                    def back(i: int = i, op: ast.cmpop = op, n: ast.Compare = node) -> None:
                        n.ops[i] = op

                    emit(node, f"`{_SYMBOL[type(op)]}` -> `{_SYMBOL[type(new)]}`", put, back)
        elif isinstance(node, ast.BoolOp):
            old_op = node.op
            swapped: ast.boolop = ast.Or() if isinstance(old_op, ast.And) else ast.And()
            names = ("and", "or") if isinstance(old_op, ast.And) else ("or", "and")

            def put_b(n: ast.BoolOp = node, op: ast.boolop = swapped) -> None:
                n.op = op

            def back_b(n: ast.BoolOp = node, op: ast.boolop = old_op) -> None:
                n.op = op

            emit(node, f"`{names[0]}` -> `{names[1]}`", put_b, back_b)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            _replace_in_parent(tree, node, node.operand, emit, "`not x` -> `x`")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            old_bin = node.op
            new_bin: ast.operator = ast.Sub() if isinstance(old_bin, ast.Add) else ast.Add()
            label = "`+` -> `-`" if isinstance(old_bin, ast.Add) else "`-` -> `+`"

            def put_o(n: ast.BinOp = node, op: ast.operator = new_bin) -> None:
                n.op = op

            def back_o(n: ast.BinOp = node, op: ast.operator = old_bin) -> None:
                n.op = op

            emit(node, label, put_o, back_o)
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            _set_constant(node, not node.value, emit)
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            _set_constant(node, node.value + 1, emit)
            if node.value != 0:
                _set_constant(node, node.value - 1, emit)
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Compare | ast.BoolOp | ast.UnaryOp):
            _replace_in_parent(
                tree, node.value, ast.UnaryOp(ast.Not(), node.value), emit, "`return c` -> `return not c`"
            )
    return found


def _set_constant(node: ast.Constant, value: Any, emit: Emit) -> None:
    old = node.value

    def put() -> None:
        node.value = value

    def back() -> None:
        node.value = old

    emit(node, f"`{old!r}` -> `{value!r}`", put, back)


def _replace_in_parent(tree: ast.AST, node: ast.AST, new: ast.AST, emit: Emit, change: str) -> None:
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is node:

                def put(p: ast.AST = parent, f: str = name) -> None:
                    setattr(p, f, new)

                def back(p: ast.AST = parent, f: str = name) -> None:
                    setattr(p, f, node)

                emit(node, change, put, back)
                return
            if isinstance(value, list) and any(v is node for v in value):
                i = next(i for i, v in enumerate(value) if v is node)

                def put_l(lst: list[ast.AST] = value, i: int = i) -> None:
                    lst[i] = new

                def back_l(lst: list[ast.AST] = value, i: int = i) -> None:
                    lst[i] = node

                emit(node, change, put_l, back_l)
                return


def _pytest(args: list[str], timeout: float) -> tuple[bool, float]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *args]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - started
    return done.returncode == 0, time.monotonic() - started


def run_module(key: str, budget: float) -> ModuleResult:
    target = MODULES[key]
    relative, tests = target.file, target.tests
    path = ROOT / relative
    original = path.read_bytes()
    stat = path.stat()
    passed, baseline = _pytest(tests, 600)
    if not passed:
        raise SystemExit(f"{key}: its tests fail without any mutant: {' '.join(tests)}")
    result = ModuleResult(key, relative, tests, round(baseline, 1))
    timeout = max(3 * baseline, 20.0)
    deadline = time.monotonic() + budget
    for mutant, text in mutants(original.decode(), target.functions):
        result.mutants.append(mutant)
        if time.monotonic() > deadline:
            continue
        try:
            path.write_text(text)
            ok, seconds = _pytest(tests, timeout)
        finally:
            path.write_bytes(original)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        mutant.seconds = round(seconds, 1)
        mutant.outcome = "survived" if ok else "timeout" if seconds >= timeout else "killed"
        print(f"{key}:{mutant.line} {mutant.change}: {mutant.outcome} ({seconds:.1f} s)", flush=True)
    return result


def write(results: list[ModuleResult]) -> None:
    """Merge into results.json (one entry per module, the latest run) and draw results.md from it."""
    data_path = HERE / "results.json"
    data = json.loads(data_path.read_text()) if data_path.exists() else {"modules": {}}
    info = machine("pytest")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for r in results:
        data["modules"][r.module] = {
            "file": r.file,
            "tests": r.tests,
            "date": when,
            "machine": info,
            "baseline_seconds": r.baseline_seconds,
            "mutants": len(r.mutants),
            "run": r.run,
            "killed": r.killed,
            "survived": len(r.survived),
            "score": r.score,
            "survivors": [asdict(m) for m in r.survived],
            "explained": data["modules"].get(r.module, {}).get("explained", {}),
        }
    data_path.write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        "# Mutation testing",
        "",
        "`scripts/mutation` (bench/mutation/run.py): one-line mutants of each module, run against its fast tests.",
        "Score = killed / run. Survivors are listed with why they survive (`explained` in results.json).",
        "",
        "Not run: mutants the module's time budget did not reach. Equivalent: survivors explained as changing",
        "nothing observable; the last score leaves them out.",
        "",
        "| module | file | mutants | run | killed | survived | score | equivalent | score without | date | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, m in data["modules"].items():
        where = f"{m['machine']['cores']} cores, {m['machine']['cpu']}"
        explained = m["explained"]
        same = sum(explained.get(f"{s['line']} {s['change']}", "").startswith("equivalent") for s in m["survivors"])
        without = round(100 * m["killed"] / (m["run"] - same), 1) if m["run"] > same else 0.0
        lines.append(
            f"| {key} | {m['file']} | {m['mutants']} | {m['run']} | {m['killed']} | {m['survived']} "
            f"| {m['score']} % | {same} | {without} % | {m['date']} | {where} |"
        )
    for key, m in data["modules"].items():
        if m["survivors"]:
            lines += ["", f"## Survivors: {key}", ""]
            for s in sorted(m["survivors"], key=lambda s: (s["line"], s["change"])):
                why = m["explained"].get(f"{s['line']} {s['change']}", "not explained yet")
                lines.append(f"- line {s['line']}, {s['change']}: {why}")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", choices=[[], *MODULES], help="module keys (default: all)")
    parser.add_argument("--budget", type=float, default=900, help="seconds per module (default 900)")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run restores the module it mutated
    keys = args.modules or list(MODULES)
    if args.list:
        for key in keys:
            for mutant, _ in mutants((ROOT / MODULES[key].file).read_text(), MODULES[key].functions):
                print(f"{key}:{mutant.line} {mutant.change}")
        return
    results = [run_module(key, args.budget) for key in keys]
    write(results)
    for r in results:
        print(f"{r.module}: {r.killed}/{r.run} killed ({r.score} %), {len(r.survived)} survived")


if __name__ == "__main__":
    main()
