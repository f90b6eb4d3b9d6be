"""promotions.yaml loading: every problem reported as FILE:LINE:COL: PATH: MESSAGE, never a traceback.

tests/broken_configs/*.yaml is a corpus of broken files; the first line of each is
`# expect: LINE:COL substring-of-message` naming (one of) the errors it must produce.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from promoflow import config_loader
from promoflow.config import NameIssues, Promotions
from promoflow.config_loader import MAX_FILE_BYTES, ConfigError, Problem, load, plain_data


def validate_command(file: Path | str) -> list[str]:
    """The CLI under test: `promoflow validate FILE`."""
    return [sys.executable, "-m", "promoflow", "validate", str(file)]


def run_validate(file: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(validate_command(file), capture_output=True, text=True, timeout=120)


CORPUS = Path(__file__).parent / "broken_configs"
BROKEN = sorted(CORPUS.glob("*.yaml"))
EXPECT = re.compile(rb"^# expect: (\d+):(\d+) (.+)$")

VALID = """\
version: 1
repository:
  url: ./repo.git
  forge: local
  layout: branches
environments:
  - name: dev
    branch: env/dev
    auto_promote: true
  - name: staging
    branch: env/staging
    approval:
      required: 1
      approvers: [alice, bob]
      sources: [ui, cli]
  - name: prod
    branch: env/prod
    approval: {required: 1, sources: [ui, cli]}
apps:
  - name: web
    path: apps/web
    images:
      - name: registry.example.com/demo/web
        source: {oci_layout: ./oci/web}
        policy: {semver: "^1.0", prerelease: false}
    health_checks:
      - url: http://127.0.0.1:8080/healthz
"""


def expectation(path: Path) -> tuple[int, int, str]:
    first_line = path.read_bytes().split(b"\n", 1)[0]
    match = EXPECT.match(first_line)
    assert match, f"{path.name} must start with '# expect: LINE:COL substring'"
    return int(match[1]), int(match[2]), match[3].decode()


def write(tmp_path: Path, text: str, name: str = "promotions.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value.problems


# -- the corpus ------------------------------------------------------------------------------------


def test_corpus_covers_enough_cases() -> None:
    assert len(BROKEN) >= 24
    for path in BROKEN:
        expectation(path)


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_config_is_located(path: Path) -> None:
    line, column, substring = expectation(path)
    problems = problems_of(path)
    assert any((p.file, p.line, p.column) == (str(path), line, column) and substring in p.message for p in problems), (
        "\n".join(map(str, problems))
    )


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_validate_cli_reports_broken_config(path: Path) -> None:
    line, column, substring = expectation(path)
    result = run_validate(path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    prefix = f"{path}:{line}:{column}:"
    assert any(row.startswith(prefix) and substring in row for row in result.stderr.splitlines()), output


# -- every problem, located ----------------------------------------------------------------------------


THREE_ERRORS = (
    VALID.replace("      required: 1\n", "      required: two\n")
    .replace("    auto_promote: true\n", "    auto_promote: true\n    aprovals: {required: 1}\n")
    .replace("  - name: prod\n", "  - name: dev\n")
)


def test_all_independent_errors_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, THREE_ERRORS)
    problems = problems_of(path)
    assert [(p.line, p.column, p.path, p.message) for p in problems] == [
        (10, 5, "environments[0].aprovals", "unknown key 'aprovals'; did you mean 'approval'?"),
        (14, 17, "environments[1].approval.required", "expected an integer, got 'two'"),
        (17, 11, "environments[2].name", "duplicate environment name 'dev' (first defined at line 7)"),
    ]


def test_validate_cli_prints_all_errors(tmp_path: Path) -> None:
    path = write(tmp_path, THREE_ERRORS)
    result = run_validate(path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{path}:10:5", f"{path}:14:17", f"{path}:17:11"]


def test_duplicate_keys_do_not_hide_other_problems(tmp_path: Path) -> None:
    text = VALID.replace("    branch: env/dev\n", "    branch: env/dev\n    branch: env/dev2\n").replace(
        "required: 1, sources", "required: -1, sources"
    )
    problems = problems_of(write(tmp_path, text))
    assert [(p.line, p.column, p.message) for p in problems] == [
        (9, 5, "duplicate key 'branch' (first defined at line 8)"),
        (19, 26, "must be at least 0, got -1"),
    ]


def test_missing_key_points_at_the_mapping_that_lacks_it(tmp_path: Path) -> None:
    text = VALID.replace("        source: {oci_layout: ./oci/web}\n", "        source: {}\n")
    [problem] = problems_of(write(tmp_path, text))
    assert (problem.line, problem.column, problem.path) == (24, 17, "apps[0].images[0].source")
    assert problem.message == "set exactly one of `oci_layout` or `registry`, got a mapping"


def test_unknown_environment_reference_points_at_the_entry(tmp_path: Path) -> None:
    text = VALID.replace("    path: apps/web\n", "    path: apps/web\n    environments:\n      - dev\n      - qa\n")
    [problem] = problems_of(write(tmp_path, text))
    assert (problem.line, problem.column, problem.path) == (24, 9, "apps[0].environments[1]")
    assert problem.message.startswith("unknown environment 'qa'")


# -- rendering ---------------------------------------------------------------------------------------


def test_problem_and_error_rendering() -> None:
    one = Problem("p.yaml", 3, 7, "environments[1].approval.required", "expected an integer, got 'two'")
    two = Problem("p.yaml", 1, 1, "", "file does not exist")
    assert str(one) == "p.yaml:3:7: environments[1].approval.required: expected an integer, got 'two'"
    assert str(two) == "p.yaml:1:1: file does not exist"
    error = ConfigError([one, two])
    assert error.problems == [one, two]
    assert str(error) == f"{one}\n{two}"


# -- files that are not even YAML ------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    [problem] = problems_of(path)
    assert (problem.file, problem.line, problem.column) == (str(path), 1, 1)
    assert "does not exist" in problem.message


def test_zero_byte_file(tmp_path: Path) -> None:
    [problem] = problems_of(write(tmp_path, ""))
    assert (problem.line, problem.column) == (1, 1)
    assert "empty" in problem.message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path)
    assert "directory" in problem.message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "promotions.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert load(path).environments[0].name == "dev"


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\n" + "[" * 5000,
        "x: &a [*a]\n",
        "? [1, 2]\n: 3\n",
        "1: 2\nnull: 3\n",
        "a: !!binary AAAA\n",
        "version: 1\nrepository: {url: a\x01b}\n",
        "- - - -\n",
        "{{{",
        "'\n",
        "%YAML 9.9\n---\na: 1\n",
    ],
)
def test_odd_yaml_never_escapes_as_a_traceback(tmp_path: Path, text: str) -> None:
    problems_of(write(tmp_path, text))


def test_truncated_and_mangled_files_never_escape(tmp_path: Path) -> None:
    """Cut the valid file anywhere, or drop any one line: only ConfigError ever comes out."""
    lines = VALID.splitlines(keepends=True)
    variants = [VALID[:cut] for cut in range(0, len(VALID), 3)]
    variants += ["".join(lines[:i] + lines[i + 1 :]) for i in range(len(lines))]
    variants += [VALID.replace("  ", "\t", 1 + i % 5) for i in range(5)]
    path = tmp_path / "promotions.yaml"
    for text in variants:
        path.write_text(text, encoding="utf-8")
        try:
            load(path)
        except ConfigError as error:
            assert error.problems
            assert all(p.line >= 1 and p.column >= 1 for p in error.problems)


# -- values that must mean something ------------------------------------------------------------------


@pytest.mark.parametrize(
    "branch",
    ["main", "env/production", "release-1.2", "feature/a_b.c", "Ünïcode", "v1.0@x", "a/b/c"],
)
def test_git_branch_names_are_accepted(tmp_path: Path, branch: str) -> None:
    config = load(write(tmp_path, VALID.replace("branch: env/staging", f"branch: '{branch}'")))
    assert config.environment("staging").branch == branch


@pytest.mark.parametrize(
    ("branch", "why"),
    [
        ("env/staging..next", "`..`"),
        ("env~1", "'~'"),
        ("env^", "'^'"),
        ("env:prod", "':'"),
        ("env?", "'?'"),
        ("env*", "'*'"),
        ("env[1]", "'['"),
        ("env\\prod", "'\\'"),
        ("env@{1}", "`@{`"),
        ("-prod", "it starts with '-'"),
        ("env prod", "a space"),
        ("env\tprod", "a control character"),
        ("/prod", "it starts or ends with '/'"),
        ("prod/", "it starts or ends with '/'"),
        ("env//prod", "`//`"),
        ("env/.prod", "a part starts with '.'"),
        ("env/prod.lock", "a part ends with '.lock'"),
        ("prod.", "it ends with '.'"),
        ("@", "'@' alone"),
        ("HEAD", "'HEAD'"),
    ],
)
def test_invalid_git_branch_names_are_located(tmp_path: Path, branch: str, why: str) -> None:
    quoted = branch.replace("\\", "\\\\").replace("\t", "\\t")
    [problem] = problems_of(write(tmp_path, VALID.replace("branch: env/staging", f'branch: "{quoted}"')))
    assert (problem.line, problem.column, problem.path) == (11, 13, "environments[1].branch")
    assert problem.message.startswith(f"not a valid git branch name: {why}"), problem.message


def test_a_bad_repository_branch_is_reported_once_not_for_every_environment_using_it() -> None:
    [problem] = problems_of(CORPUS / "bad_repository_branch.yaml")
    assert problem.path == "repository.branch"


@pytest.mark.parametrize(
    "url",
    ["http://", "https:///healthz", "http://:8080/", "ftp://web/healthz", "http://[::1/healthz", "http://web:99999/",
     "http://we b/healthz", "http://web/\x7f", "web.example.com/healthz"],
)  # fmt: skip
def test_a_health_check_url_must_name_a_host(tmp_path: Path, url: str) -> None:
    text = VALID.replace("http://127.0.0.1:8080/healthz", url.replace("\x7f", "\\x7f").join('""'))
    [problem] = problems_of(write(tmp_path, text))
    assert (problem.line, problem.path) == (27, "apps[0].health_checks[0].url")
    assert problem.message.startswith("expected a URL starting with http:// or https:// and naming a host")


# -- hostile files: bounded, refused at once ------------------------------------------------------------


def run_validate_bounded(file: Path | str, memory_bytes: int = 1 << 30) -> subprocess.CompletedProcess[str]:
    """`promoflow validate FILE` in at most 1 GiB of address space, killed after 60 s."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    return subprocess.run(validate_command(file), capture_output=True, text=True, timeout=60, preexec_fn=limit)


def alias_bomb(item: str, levels: int) -> str:
    """A 'billion laughs': each anchor repeats the one before ten times (10**levels items once expanded)."""
    lines = [f"a0: &a0 [{item}]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "bomb",
    [alias_bomb("lol", 9), alias_bomb("x" * 100_000, 4)],  # a billion strings; ten thousand copies of 100 kB
    ids=["many-values", "long-strings"],
)
def test_an_alias_bomb_is_refused_at_once_in_bounded_memory(tmp_path: Path, bomb: str) -> None:
    path = write(tmp_path, bomb)
    started = time.monotonic()
    result = run_validate_bounded(path)
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 30
    [problem] = result.stderr.splitlines()
    assert problem.startswith(f"{path}:") and "aliases (*name) expand this file" in problem, problem
    line = int(problem.split(":")[1])
    assert 2 <= line <= 10  # at the alias whose expansion went over the bound


def test_anchors_and_aliases_of_a_normal_size_still_work(tmp_path: Path) -> None:
    text = VALID.replace("approvers: [alice, bob]", "approvers: &reviewers [alice, bob]")
    text = text.replace("sources: [ui, cli]}", "sources: [ui, cli], approvers: *reviewers}")
    assert load(write(tmp_path, text)).environment("prod").approval.approvers == ["alice", "bob"]


def test_a_file_over_the_size_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "#" + "x" * MAX_FILE_BYTES + "\n")
    [problem] = problems_of(path)
    assert (problem.line, problem.column) == (1, 1)
    assert f"larger than {MAX_FILE_BYTES // 1024} KiB" in problem.message


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_pipe_or_a_device_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "promotions.yaml"
        os.mkfifo(path)  # nobody ever writes to it: reading would wait forever
    else:
        path = Path("/dev/zero")  # endless
    result = run_validate_bounded(path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"{path}:1:1: not a regular file"), result.stderr


def test_a_huge_integer_is_a_located_plain_error(tmp_path: Path) -> None:
    text = VALID.replace("    auto_promote: true\n", "    auto_promote: true\n    soak_seconds: 1" + "0" * 5000 + "\n")
    [problem] = problems_of(write(tmp_path, text))
    assert (problem.line, problem.column, problem.path) == (10, 19, "")
    assert problem.message == "this number is too large (5001 digits)"


# -- the valid case ---------------------------------------------------------------------------------


def test_valid_file_loads(tmp_path: Path) -> None:
    config = load(write(tmp_path, VALID))
    assert isinstance(config, Promotions)
    assert [e.name for e in config.environments] == ["dev", "staging", "prod"]
    assert config.environment("staging").approval.approvers == ["alice", "bob"]
    assert config.app("web").images[0].policy.semver == "^1.0"
    assert config.previous("web", "prod") == config.environment("staging")


def test_validate_cli_accepts_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    result = run_validate(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{path}: valid (3 environments, 1 apps)"]
    assert "Traceback" not in result.stderr


# -- the fast path: libyaml for valid files ----------------------------------------------------------------

ROOT = Path(__file__).parents[1]
SCALARS = [
    "1", "-1", "+1", "0", "-0", "017", "08", "0o17", "0o8", "0x1F", "0x_1", "0b101", "1_000", "1__2", "__", "1.5",
    "0.", "1e3", "1.5e3", "1e", ".5", "+.5", "09.5", "-.inf", ".Inf", ".NaN", "1:20", "1:20.5", "yes", "no", "on",
    "off", "y", "n", "true", "False", "TRUE", "null", "~", "Null", "", "'1'", '"yes"', "'it''s'", '"\\u00e9"',
    "2024-01-01", "2024-01-01T10:00:00Z", "2024-13-01", "=", "<<", "!!str 12", "!!int '12'", "!!float 1",
    "!!binary AAAA", "!custom x", "&a 1", "[1, 2]", "{a: 1}", "{1: a}", "{a: 1, a: 2}", "|\n  text\n  more\n",
    ">-\n  folded\n  text\n", "[*x]", "1" + "0" * 5000,
]  # fmt: skip


def located_data(text: str) -> object:
    """What the located path (ruamel.yaml, round trip) reads, or the problems it reports."""
    loader = config_loader._Loader("promotions.yaml")
    try:
        return loader._plain_top(loader._parse(text))
    except config_loader._Stop:
        return loader.problems


@pytest.mark.parametrize("value", SCALARS)
def test_the_fast_path_reads_a_value_as_the_located_path_does_or_leaves_it_to_it(value: str) -> None:
    text = f"key: {value}\n"
    fast, located = plain_data(text), located_data(text)
    if fast is not None:  # repr: 1 is not 1.0 nor True, and nan is nan
        assert repr(fast) == repr(located)


def test_the_fast_path_reads_the_plain_values_and_every_shipped_config() -> None:
    plain = [v for v in SCALARS if plain_data(f"key: {v}\n") is not None]
    assert len(plain) >= 40, plain  # not a path that gives everything up
    texts = [VALID, (ROOT / "promotions.yaml").read_text(), (ROOT / "promoflow/demo_promotions.yaml").read_text()]
    for text in texts:
        fast = plain_data(text)
        assert fast is not None and repr(fast) == repr(located_data(text))


def test_the_fast_path_leaves_every_broken_file_to_the_located_path() -> None:
    for path in BROKEN:
        text = path.read_bytes().decode("utf-8", errors="replace")
        fast = plain_data(text)
        assert fast is None or repr(fast) == repr(located_data(text)), path.name


def many_apps(apps: int) -> str:
    return VALID + "".join(
        f"  - name: app{n:03d}\n    path: apps/app{n:03d}\n    images:\n"
        f"      - name: registry.example.com/bench/app{n:03d}\n"
        f"        source: {{oci_layout: oci/app{n:03d}}}\n        policy: {{semver: '^1.0'}}\n"
        for n in range(apps)
    )


def test_a_valid_file_of_200_apps_loads_many_times_faster_than_the_located_path(tmp_path: Path) -> None:
    """Every flow run's process loads promotions.yaml first (goal: <= 0.1 s for 200 apps; the located path, which
    every load took before, needs about 0.7 s on an idle machine). Both timed here, taking turns so that a burst of
    load on the shared machine falls on both, the best of five each."""
    path = write(tmp_path, many_apps(200))

    def timed(read: Callable[[], object]) -> float:
        started = time.perf_counter()
        read()
        return time.perf_counter() - started

    turns = [(timed(lambda: load(path)), timed(lambda: located_data(path.read_text()))) for _ in range(5)]
    fast, located = min(f for f, _ in turns), min(s for _, s in turns)
    assert len(load(path).apps) == 201
    assert fast < located / 4 and fast < 0.5, (fast, located)


# -- finding the file -----------------------------------------------------------------------------------


# -- the models on their own -----------------------------------------------------------------------


def test_models_still_reject_duplicates_without_the_loader() -> None:
    data = {
        "repository": {"url": "r"},
        "environments": [{"name": "dev", "branch": "a"}, {"name": "dev", "branch": "b"}],
        "apps": [{"name": "web", "path": "w", "images": [{"name": "i", "source": {"oci_layout": "o"}}]}],
    }
    with pytest.raises(ValidationError) as caught:
        Promotions.model_validate(data)
    [error] = caught.value.errors()
    issues = error["ctx"]["error"]
    assert isinstance(issues, NameIssues)
    assert [(i.loc, i.first) for i in issues.issues] == [(("environments", 1, "name"), ("environments", 0, "name"))]
    assert "duplicate environment name 'dev'" in str(caught.value)


def test_a_password_written_into_the_file_is_refused_without_being_echoed() -> None:
    result = run_validate(CORPUS / "credentials_literal_password.yaml")
    assert result.returncode == 2
    assert "not the password itself" in result.stderr and "hunter2" not in result.stdout + result.stderr


def test_a_prometheus_header_written_into_the_file_is_refused_without_being_echoed() -> None:
    result = run_validate(CORPUS / "prometheus_literal_header.yaml")
    assert result.returncode == 2
    assert "not the value itself" in result.stderr and "s3cr3t-t0ken" not in result.stdout + result.stderr
