"""The promotions.yaml schema.

The models are the documentation: every field has a description, and
`promoflow schema` prints them as JSON Schema for editor completion.
Loading (with file:line:column errors) lives in `promoflow.config_loader`.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from promoflow import forges, references, timing
from promoflow.clusters import targets
from promoflow.errors import NotFound

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


def branch_name(value: str) -> str:
    """A name `git check-ref-format --branch` accepts (and `git branch` creates); ValueError says why not."""
    why = None
    control = next((c for c in value if ord(c) < 0x20 or ord(c) == 0x7F), None)
    forbidden = next((c for c in value if c in "~^:?*[\\"), None)
    if value.startswith("-"):
        why = "it starts with '-'"
    elif control is not None:
        why = "a control character"
    elif " " in value:
        why = "a space"
    elif forbidden is not None:
        why = f"'{forbidden}'"
    elif ".." in value or "@{" in value or "//" in value:
        why = next(f"`{s}`" for s in ("..", "@{", "//") if s in value)
    elif value.startswith("/") or value.endswith("/"):
        why = "it starts or ends with '/'"
    elif value.endswith("."):
        why = "it ends with '.'"
    elif any(part.startswith(".") for part in value.split("/")):
        why = "a part starts with '.'"
    elif any(part.endswith(".lock") for part in value.split("/")):
        why = "a part ends with '.lock'"
    elif value in ("@", "HEAD"):
        why = f"{value!r} alone" if value == "@" else "'HEAD'"
    if why is not None:
        raise ValueError(f"not a valid git branch name: {why} (see `git help check-ref-format`)")
    return value


BranchName = Annotated[str, Field(min_length=1), AfterValidator(branch_name)]


def http_url(value: str) -> str:
    """An http:// or https:// URL naming a host, that an HTTP client can request as it is."""
    try:
        split = urlsplit(value)
        port_ok = split.port is None or split.port > 0  # .port raises for one out of range
    except ValueError:
        port_ok = False
    printable = all(c.isprintable() and not c.isspace() for c in value)
    if not (port_ok and printable and split.scheme in ("http", "https") and split.hostname):
        raise ValueError(
            "expected a URL starting with http:// or https:// and naming a host, e.g. https://web.example.com/healthz"
        )
    return value


HttpUrl = Annotated[str, AfterValidator(http_url)]


def _registered(kind: str, known: list[str]) -> object:
    """A name from a registry of modules (forges, cluster targets): a new module is a new valid name."""

    def check(name: str) -> str:
        if name not in known:
            raise ValueError(f"must be a {kind} promoflow has: {', '.join(known)}")
        return name

    return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "enum": known})]


ForgeName = _registered("forge", forges.known())
TargetName = _registered("cluster target", targets.known())


Duration = Annotated[
    timedelta,
    BeforeValidator(timing.duration),
    WithJsonSchema({"type": ["string", "number"], "examples": ["90s", "30m", "24h", "2d", "1h30m"]}),
]
TimeZone = Annotated[str, AfterValidator(lambda name: timing.zone(name) and name)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GitHub(Strict):
    """Where the promotion pull requests live (`forge: github`)."""

    repository: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="The repository on GitHub, `OWNER/NAME`."
    )
    api_url: HttpUrl | None = Field(
        None,
        description="API base URL: empty for github.com, `https://HOST/api/v3` for GitHub Enterprise Server.",
    )
    token: str = Field(
        "env:GITHUB_TOKEN",
        description="Where the token is: `env:VARIABLE` or `prefect:BLOCK` (a Prefect Secret block). It needs "
        "contents, pull requests and commit statuses write, checks read (members read for `@org/team` approvers).",
    )
    merge_method: Literal["merge", "squash", "rebase"] = Field(
        "merge", description="How promoflow merges an approved pull request."
    )
    poll_seconds: float = Field(
        30,
        ge=1,
        le=3600,
        description="Longest pause between two looks at reviews and checks (webhooks wake it sooner).",
    )

    @field_validator("token")
    @classmethod
    def _reference(cls, value: str) -> str:
        from promoflow.secrets import check_reference

        return check_reference(value)


class Repository(Strict):
    url: str = Field(
        description="Git URL or path of the repository holding the environments. "
        "A relative path is relative to promotions.yaml."
    )
    forge: ForgeName = Field(  # type: ignore[valid-type]
        "local",
        description="Where promotion requests live. `local`: a branch plus a record, approved from the Prefect "
        "UI or the CLI, merged by promoflow. `github`: a pull request; reviews are approvals (`sources: "
        "[forge]`), required statuses and checks are gates, GitHub merges it.",
    )
    github: GitHub | None = Field(None, description="The GitHub side of `forge: github`.")
    layout: Literal["branches", "directories"] = Field(
        "branches",
        description="`branches`: one git branch per environment. `directories`: one branch (`branch`), one "
        "directory per environment (each environment's `path`).",
    )
    branch: BranchName | None = Field(
        None, description="The branch holding every environment (`layout: directories`) [main]."
    )
    promote: Literal["edit", "branch"] = Field(
        "edit",
        description="`edit`: a request branch cut from the environment with the release's image references "
        "pinned. `branch`: the request merges the previous environment's branch as it is (environment "
        "branches stay identical; the first environment is still edited).",
    )


ApprovalSource = Literal["ui", "cli", "forge"]


def _default_sources() -> list[ApprovalSource]:
    return ["ui", "cli"]


class ApprovalPolicy(Strict):
    required: int = Field(0, ge=0, le=10, description="Approvals needed before merging; 0 promotes without a person.")
    approvers: list[str] = Field(
        default_factory=list,
        description="Who may approve. Empty: anyone except the requester.",
    )
    sources: list[ApprovalSource] = Field(
        default_factory=_default_sources,
        min_length=1,
        description="Where an approval may come from: `ui` (Prefect UI form), `cli`, `forge` (pull request "
        "reviews) [ui, cli; with `forge: github`: forge].",
    )
    allow_self_approval: bool = Field(
        False, description="Whether the person who requested the promotion may approve it."
    )
    timeout_seconds: int = Field(7 * 24 * 3600, gt=0, description="How long to wait for approvals before failing.")


class RetryPolicy(Strict):
    attempts: int = Field(3, ge=1, le=20, description="Tries of a step on transient errors.")
    backoff_seconds: float = Field(2.0, ge=0, le=3600, description="First delay between tries; doubles each time.")


class RollbackPolicy(Strict):
    automatic: bool = Field(True, description="Roll back by itself when verification fails.")
    require_approval: bool = Field(False, description="Whether a rollback waits for approvals (emergency default: no).")


class ClusterTarget(Strict):
    target: TargetName = Field(  # type: ignore[valid-type]
        "none",
        description="`none`: the merge ends the change. `kubernetes`: promoflow renders the app (plain YAML, "
        "kustomize, helm) and server-side applies it, pruning what it applied before and no longer renders, then "
        "waits for the rollout. `argocd` / `flux`: the controller syncs the merged commit; promoflow asks it to "
        "(unless `sync: false`) and waits until it reports that commit healthy.",
    )
    name: str | None = Field(
        None, description="The Argo CD Application or Flux Kustomization of this app and environment."
    )
    namespace: str | None = Field(
        None, description="Its namespace [default: `argocd` for Argo CD, `flux-system` for Flux]."
    )
    sync: bool = Field(True, description="Ask the controller to sync now rather than at its next poll.")
    kubeconfig: str | None = Field(
        None,
        description="kubeconfig file (relative to promotions.yaml) [default: $KUBECONFIG or ~/.kube/config; with "
        "neither, in a Kubernetes pod, the pod's ServiceAccount].",
    )
    context: str | None = Field(None, description="kubeconfig context of this environment's cluster.")
    force: bool = Field(False, description="Take over fields another field manager owns (server-side apply force).")
    rollout_timeout_seconds: float = Field(
        300, gt=0, le=86400, description="How long Deployments, StatefulSets and DaemonSets may take to roll out."
    )

    @model_validator(mode="after")
    def _fits_the_target(self) -> ClusterTarget:
        if self.target == "none" and (self.kubeconfig or self.context):
            raise ValueError("`kubeconfig` and `context` name a cluster: the `none` target has none")
        if self.target != "kubernetes" and self.force:
            raise ValueError("`force` belongs to the `kubernetes` target")
        gitops = self.target in ("argocd", "flux")
        if gitops and not self.name:
            raise ValueError(f"the `{self.target}` target needs the `name` of the object to wait for")
        if not gitops and (self.name or self.namespace):
            raise ValueError("`name` and `namespace` belong to the `argocd` and `flux` targets")
        return self


# -- Metric checks: each environment's Prometheus, each app's checks of the change there ----------------------------

# What promoflow fills into a metric check's query (PromQL's own braces, `{app="web"}`, are left alone).
QUERY_PLACEHOLDERS = ("app", "environment", "namespace", "release")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


def _header_reference(value: str) -> str:
    from promoflow.secrets import REFERENCE, REFERENCE_HELP

    if not REFERENCE.match(value):
        raise ValueError(f"write where the header's value is, {REFERENCE_HELP}, not the value itself")
    return value


class Prometheus(Strict):
    """The Prometheus an environment's metric checks ask (its HTTP API, `/api/v1/query`)."""

    url: HttpUrl = Field(
        description="Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090` (Thanos, Mimir "
        "and VictoriaMetrics serve the same API under their own prefix, e.g. `https://mimir.example.com/prometheus`)."
    )
    headers: dict[Annotated[str, Field(pattern=_HEADER_NAME)], Annotated[str, AfterValidator(_header_reference)]] = (
        Field(
            default_factory=dict,
            description="Headers sent with every query, each value a secret reference, `env:VARIABLE` or "
            "`prefect:BLOCK`: `{Authorization: env:PROMETHEUS_AUTH}` with `Bearer ...` in the variable.",
        )
    )
    query_timeout_seconds: float = Field(10, gt=0, le=300, description="Timeout of one query.")
    timeout_seconds: float = Field(
        300,
        gt=0,
        le=86400,
        description="How long the checks go on looking while this Prometheus does not answer (unreachable, timeouts, "
        "5xx) before the promotion fails; the release is not rolled back for it.",
    )


class MetricCheck(Strict):
    """A PromQL query whose value must stay within a threshold for a while after the change."""

    name: str = Field(pattern=NAME_PATTERN, description="Check name, e.g. `error-ratio`.")
    query: str = Field(
        min_length=1,
        max_length=8000,
        description="PromQL instant query giving one number (aggregate series: `sum(...)`, `max(...)`). Filled in: "
        "`{app}`, `{environment}`, `{release}` (its label, e.g. `1.4.0`) and `{namespace}` (where the `kubernetes` "
        "target applied the app).",
    )
    max: float | None = Field(None, allow_inf_nan=False, description="A look whose value is above this fails.")
    min: float | None = Field(None, allow_inf_nan=False, description="A look whose value is below this fails.")
    for_seconds: float = Field(
        0, ge=0, le=86400, description="How long after the change the check keeps looking (0: one look)."
    )
    interval_seconds: float = Field(15, ge=1, le=3600, description="Time between two looks.")
    failure_limit: int = Field(0, ge=0, le=1000, description="Failing looks tolerated; one more fails the check.")
    no_data: Literal["fail", "pass", "wait"] = Field(
        "fail",
        description="A look without a value (no series, NaN): `fail` counts it failing, `pass` passing; `wait` "
        "does not count it, and `for_seconds` start at the first look with a value (none by then: the check fails).",
    )
    environments: list[str] | None = Field(
        None, description="Only in these environments (default: every one of the app's with a `prometheus`)."
    )

    @field_validator("query")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = [n for n in _PLACEHOLDER.findall(value) if n not in QUERY_PLACEHOLDERS]
        if unknown:
            known = ", ".join(f"{{{n}}}" for n in QUERY_PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}: promoflow fills in {known}")
        return value

    @model_validator(mode="after")
    def _a_threshold(self) -> MetricCheck:
        if self.max is None and self.min is None:
            raise ValueError("a metric check needs a threshold: `max`, `min` or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"`min` ({self.min:g}) is above `max` ({self.max:g}): no value could pass")
        return self


def metric_check_issues(promotions: object) -> list[NameIssue]:
    """Metric checks that name environments they cannot run in, share a name, run nowhere, or ask for a
    `{namespace}` promoflow cannot know there."""
    environments = {
        str(_get(e, "name")): e for e in _items(promotions, "environments") if isinstance(_get(e, "name"), str)
    }
    issues: list[NameIssue] = []
    for a, app in enumerate(_items(promotions, "apps")):
        checks = _items(app, "metric_checks")
        issues += _duplicates(checks, "name", ("apps", a, "metric_checks"), "metric check name")
        wanted = _items(app, "environments") if _get(app, "environments") is not None else list(environments)
        route = [n for n in wanted if n in environments]
        for c, check in enumerate(checks):
            loc: Loc = ("apps", a, "metric_checks", c)
            named = _get(check, "environments")
            for e, name in enumerate(_items(check, "environments")):
                if not isinstance(name, str):
                    continue
                if name not in environments:
                    close = difflib.get_close_matches(name, list(environments), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    issues.append(NameIssue((*loc, "environments", e), f"unknown environment {name!r}{hint}"))
                elif name not in route:
                    issues.append(NameIssue((*loc, "environments", e), f"the app is not promoted to {name!r}"))
                elif _get(environments[name], "prometheus") is None:
                    issues.append(NameIssue((*loc, "environments", e), f"environment {name!r} has no `prometheus`"))
            runs_in = [
                n
                for n in (named if isinstance(named, list) else route)
                if n in route and _get(environments[n], "prometheus") is not None
            ]
            if named is None and not runs_in:
                issues.append(
                    NameIssue((*loc, "name"), "this check runs nowhere: no environment of the app has a `prometheus`")
                )
            query = _get(check, "query")
            if isinstance(query, str) and "{namespace}" in query:
                for name in runs_in:
                    target = _get(_get(environments[name], "cluster"), "target") or "none"
                    if target != "kubernetes":
                        issues.append(
                            NameIssue(
                                (*loc, "query"),
                                f"`{{namespace}}` is known only where promoflow applies the app (`cluster.target: "
                                f"kubernetes`); {name} uses `{target}`: write the namespace into the query",
                            )
                        )
                        break
    return issues


class Window(Strict):
    """When promotions may enter an environment (merge into it): on `days` between `hours`, or for `duration` from
    each time `cron` fires; in `timezone`. Outside every window of its environment a promotion waits for the next
    opening. Rollbacks are never held."""

    days: list[Weekday] | None = Field(
        None, min_length=1, description="Weekdays it opens, e.g. [mon, tue, wed, thu] [every day, with `hours`]."
    )
    hours: Annotated[str, AfterValidator(lambda value: timing.hours(value) and value)] | None = Field(
        None, description="Local hours it is open, `HH:MM-HH:MM` (`22:00-06:00` runs past midnight) [all day]."
    )
    cron: Annotated[str, AfterValidator(timing.cron)] | None = Field(
        None, description="When it opens, as a five-field cron expression, e.g. `0 10 * * 1-5` (with `duration`)."
    )
    duration: Duration | None = Field(None, description="How long it stays open after each `cron` start, e.g. 2h.")
    timezone: TimeZone = Field("UTC", description="The IANA time zone of `days`, `hours` and `cron`.")

    @model_validator(mode="after")
    def _one_kind(self) -> Window:
        weekly = self.days is not None or self.hours is not None
        if weekly == (self.cron is not None):
            raise ValueError("a window is either `days`/`hours` or `cron` with `duration`")
        if (self.cron is None) != (self.duration is None):
            raise ValueError("`cron` and `duration` go together: when it opens and for how long")
        return self

    def opening(self) -> timing.Opening:
        where = timing.zone(self.timezone)
        if self.cron is not None:
            return timing.Opening(where, cron=self.cron, length=self.duration)
        return timing.Opening(where, self.days or timing.DAYS, timing.hours(self.hours or "00:00-24:00"))

    def describe(self) -> str:
        """`mon,tue 09:00-17:00 Europe/Berlin`, `` `0 10 * * 1-5` for 2h UTC ``."""
        if self.cron is not None:
            return f"`{self.cron}` for {timing.words(self.duration)} {self.timezone}"  # type: ignore[arg-type]
        days = ",".join(self.days) if self.days else "every day"
        return f"{days} {self.hours or 'all day'} {self.timezone}"


class Schedule(Strict):
    """When the environment takes the newest eligible release of each app by itself: a schedule of the served
    `tick` deployment (visible and pausable in the Prefect UI)."""

    cron: Annotated[str, AfterValidator(timing.cron)] | None = Field(
        None, description="A five-field cron expression, e.g. `0 10 * * 1-5` (weekdays at 10:00)."
    )
    rrule: Annotated[str, AfterValidator(timing.rrule)] | None = Field(
        None, description="Or an iCalendar recurrence rule, e.g. `FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=10;BYMINUTE=0`."
    )
    timezone: TimeZone = Field("UTC", description="The IANA time zone it is read in.")

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.rrule is None):
            raise ValueError("a schedule is either a `cron` expression or an `rrule`")
        return self


class Environment(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Environment name, e.g. `staging`.")
    branch: BranchName = Field(
        description="Git branch holding this environment (`layout: directories`: the repository's `branch`).",
    )
    path: str = Field(
        "",
        description="Directory of this environment in the repository (`layout: directories`) "
        "[clusters/<name>]; the apps' paths are inside it.",
    )
    checks: list[str] = Field(
        default_factory=list,
        description="Commit statuses or check runs that must pass on the request's head before the merge "
        "(`forge: github`), e.g. `ci/test`.",
    )
    cluster: ClusterTarget = Field(default_factory=ClusterTarget)
    auto_promote: bool = Field(
        True,
        description="Whether `promoflow pipeline` goes on into it (approvals still apply); "
        "false stops the pipeline before it, as a `schedule` does.",
    )
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    soak_seconds: float = Field(
        0, ge=0, le=86400, description="How long health checks must keep passing after the merge."
    )
    schedule: Schedule | None = Field(
        None,
        description="Promote into it by itself at these times: at each tick the newest release of each app that "
        "succeeded in the environment before (soaked, not rejected); nothing eligible is a skipped tick. "
        "Pipelines stop before it: only its ticks (and `promoflow promote`) take releases in.",
    )
    verified_for: Duration | None = Field(
        None,
        description="How long a release must have been good in the environment before this one (on the app's "
        "route) before it may enter, e.g. 24h (soak time; Kargo's verified-for). Counted from its promotion "
        "there succeeding; meanwhile the promotion waits before its merge.",
    )
    windows: list[Window] = Field(
        default_factory=list,
        description="When promotions may enter (merge); outside them a promotion waits for the next opening [always].",
    )
    supersede: Literal["waiting", "queued", "never"] = Field(
        "waiting",
        description="What a newer release's promotion does to an older one of the same app: `waiting` ends it "
        "while it waits (for approvals, checks, a freeze, a window, soak) or is queued, `queued` only while it is "
        "queued behind another, `never` queues behind it. The older one is recorded superseded, its request closed "
        "naming the newer.",
    )
    override_by: list[str] = Field(
        default_factory=list,
        description="People who may promote into it through a freeze or outside its windows "
        "(`promoflow promote --override-freeze --reason TEXT`), or take a release into it past environments it has "
        "not been through (`--skip-order`, a hotfix); nobody if empty.",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    prometheus: Prometheus | None = Field(None, description="Where the apps' metric checks ask, if they have any.")

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        return relative_path(value) if value else value


class TagPolicy(Strict):
    """Which tag of an image is the newest release: filter, extract, order (like Flux's ImagePolicy)."""

    semver: str = Field(
        "*",
        description="Semver range in npm syntax: `>=1.2 <2`, `^1.4`, `~1.4.2`, `1.x`, `1.0 - 2.0`, `||` "
        "(with `order: semver`, applied to the extracted value).",
    )
    prerelease: bool = Field(False, description="Whether prerelease versions (`1.2.0-rc.1`) may be picked.")
    regex: str | None = Field(
        None,
        description="Only tags matching this regular expression count (Python syntax). It matches anywhere in the "
        "tag, as in Flux, Kargo and Argo CD Image Updater: anchor it with `^` and `$` to match the whole tag.",
    )
    extract: str | None = Field(
        None,
        description="What to order by, from the regex's captures: `$build`, `${version}`, `$1` "
        "(default: the whole tag).",
    )
    order: Literal["semver", "numerical", "alphabetical", "created"] = Field(
        "semver",
        description="How the (extracted) values are compared; `created`: by the build time in each candidate's image "
        "config (newest build wins; ties to the alphabetically smallest tag; no or an invalid time ranks last).",
    )
    max_candidates: int = Field(
        20,
        ge=1,
        le=1000,
        description="With `order: created`: how many tags, the last of the registry's listing after the filters, "
        "have their build time read (one image config each, remembered by digest).",
    )
    direction: Literal["desc", "asc"] = Field(
        "desc", description="`desc`: the highest value (the newest build) wins; `asc`: the lowest (the oldest)."
    )
    ignore: list[str] = Field(default_factory=list, description="Glob patterns of tags never to pick, e.g. `*-debug`.")
    track: str | None = Field(
        None,
        description="Follow the digest of this mutable tag (`latest`, `stable`) instead of picking a tag; "
        "every new digest is a new release.",
    )

    @field_validator("semver")
    @classmethod
    def _valid_range(cls, value: str) -> str:
        from promoflow.sources.semver import parse_range

        parse_range(value)  # its ValueError says what is wrong
        return value

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"invalid regular expression: {error}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TagPolicy:
        if self.extract is not None:
            if self.regex is None:
                raise ValueError("`extract` needs a `regex` with the captures it names")
            from promoflow.sources.policy import check_template

            check_template(self.regex, self.extract)
        if self.track is not None and (self.regex is not None or self.semver != "*"):
            raise ValueError("`track` follows one mutable tag: it cannot be combined with `regex` or `semver`")
        if self.order == "created" and (self.extract is not None or self.semver != "*"):
            raise ValueError("`order: created` compares build times, not values: drop `extract` and `semver`")
        if "max_candidates" in self.model_fields_set and self.order != "created":
            raise ValueError("`max_candidates` belongs to `order: created`: it bounds the build times read")
        return self


class RegistryCredentials(Strict):
    """Who promoflow is at a registry, as references to secrets (never the secrets themselves)."""

    username: str = Field(
        min_length=1,
        description="The user name: as is (`robot$ci`), or a secret reference `env:VARIABLE` / `prefect:BLOCK`.",
    )
    password: str = Field(
        description="The password or access token: a secret reference, `env:VARIABLE` (an environment "
        "variable) or `prefect:BLOCK` (a Prefect Secret block).",
    )

    @field_validator("password")
    @classmethod
    def _a_reference(cls, value: str) -> str:
        from promoflow.secrets import REFERENCE, REFERENCE_HELP

        if not REFERENCE.match(value):
            raise ValueError(f"write where the password is, {REFERENCE_HELP}, not the password itself")
        return value

    @field_validator("username")
    @classmethod
    def _plain_or_reference(cls, value: str) -> str:
        from promoflow.secrets import check_reference

        return check_reference(value) if value.startswith(("env:", "prefect:")) else value


class ImageSource(Strict):
    """Where an image's releases come from: an OCI image-layout directory or a registry."""

    oci_layout: str | None = Field(
        None,
        description="Path of an OCI image-layout directory (index.json + blobs/); "
        "tags come from `org.opencontainers.image.ref.name`. Relative to promotions.yaml.",
    )
    registry: str | None = Field(
        None,
        pattern=r"^https?://[^/@\s]+/?$",
        description="Registry base URL, e.g. `https://ghcr.io` or `http://127.0.0.1:5000`. Credentials come "
        "from `credentials`, else PROMOFLOW_REGISTRY_<HOST>_USERNAME/_PASSWORD, else docker's config.json.",
    )
    repository: Annotated[str, AfterValidator(references.repository)] | None = Field(
        None, description="Repository in the registry, e.g. `acme/web`."
    )
    platform: str | None = Field(
        None,
        pattern=r"^[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?$",
        description="Pin the digest of this platform's image (`linux/amd64`) instead of the index's.",
    )
    credentials: RegistryCredentials | None = Field(
        None,
        description="Credentials of a `registry` source, e.g. `{username: ci-bot, password: prefect:ghcr-token}`; "
        "they take precedence over environment variables and docker's config.json.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ImageSource:
        if (self.oci_layout is None) == (self.registry is None):
            raise ValueError("set exactly one of `oci_layout` or `registry`")
        if self.registry is not None and self.repository is None:
            raise ValueError("a `registry` source needs the `repository` to watch")
        if self.oci_layout is not None and (self.repository or self.platform or self.credentials):
            raise ValueError("`repository`, `platform` and `credentials` belong to a `registry` source")
        return self


def _dotted_path(value: str) -> str:
    if not re.fullmatch(r"[^.\s]+(\.[^.\s]+)*", value):
        raise ValueError("expected the keys from the top of the values file to the value, joined by dots: image.tag")
    return value


DottedPath = Annotated[
    str,
    AfterValidator(_dotted_path),
    WithJsonSchema({"type": "string", "pattern": r"^[^.\s]+(\.[^.\s]+)*$"}),
]


class HelmValues(Strict):
    """Where a Helm chart's values file pins an image: promoflow edits these values (keeping comments, order and
    quoting) and `helm template` renders the chart with the file. A path the file lacks is refused, not created."""

    file: str = Field(
        description="The values file, relative to the app's directory in each environment, e.g. `values.yaml`."
    )
    repository: DottedPath | None = Field(None, description="Set to the image's name, e.g. `image.repository`.")
    tag: DottedPath | None = Field(
        None, description="Set to the release's tag, e.g. `image.tag`; the same path as `digest`: `TAG@DIGEST`."
    )
    digest: DottedPath | None = Field(None, description="Set to the release's digest, e.g. `image.digest`.")

    @field_validator("file")
    @classmethod
    def _inside_the_app(cls, value: str) -> str:
        if not value or value.startswith("/") or ".." in Path(value).parts:
            raise ValueError("must be a path inside the app's directory (relative, without `..`), e.g. values.yaml")
        return value

    @model_validator(mode="after")
    def _pins_something(self) -> HelmValues:
        if self.tag is None and self.digest is None:
            raise ValueError("name the `tag` or the `digest` path (or both) the release is pinned at")
        if self.repository is not None and self.repository in (self.tag, self.digest):
            raise ValueError("`repository` needs a path of its own: the image's name is not its tag or digest")
        return self


class Image(Strict):
    name: Annotated[str, AfterValidator(references.image_name)] = Field(
        description="Image name as written in the manifests, without tag or digest, e.g. `ghcr.io/acme/web`.",
    )
    source: ImageSource
    policy: TagPolicy = Field(default_factory=TagPolicy)
    helm: HelmValues | None = Field(
        None,
        description="Pin it in a Helm values file too (or only there): "
        "`{file: values.yaml, tag: image.tag, digest: image.digest}`.",
    )


class HealthCheck(Strict):
    url: HttpUrl = Field(description="URL to GET after the change is applied.")
    expect_status: int = Field(200, ge=100, le=599, description="Status that counts as healthy.")
    contains: str | None = Field(None, description="Text the body must contain, if set.")
    timeout_seconds: float = Field(5.0, gt=0, le=300, description="Timeout of one request.")
    successes: int = Field(1, ge=1, le=100, description="Consecutive successes needed.")
    interval_seconds: float = Field(1.0, ge=0, le=600, description="Delay between tries.")
    attempts: int = Field(10, ge=1, le=1000, description="Tries before the check fails.")


def relative_path(value: str) -> str:
    if value.startswith("/") or ".." in Path(value).parts:
        raise ValueError("must be a relative path inside the repository, without `..`")
    return value


def _glob(pattern: str) -> str:
    if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
        raise ValueError("must be a glob relative to `directory`, without a leading `/` or `..`")
    return pattern


Glob = Annotated[str, AfterValidator(_glob)]


class ConfigSource(Strict):
    """Config releases: commits on a branch of a git repository. Each new commit that touches an included
    (and not excluded) file of `directory` is a release; promoting it makes the app's path in the
    environment a copy of that directory at that commit, with the app's image pins applied on top."""

    url: str = Field(
        min_length=1,
        description="Git URL or path of the repository. A relative path is relative to promotions.yaml.",
    )
    branch: BranchName = Field("main", description="Branch whose commits are releases.")
    directory: str = Field(".", min_length=1, description="Directory in that repository holding the app's config.")
    include: list[Glob] = Field(
        default_factory=lambda: ["**"],
        min_length=1,
        description="Globs of paths (relative to `directory`; `*` stays within one directory, `**` crosses "
        "them) whose changes make a release.",
    )
    exclude: list[Glob] = Field(
        default_factory=list, description="Globs of paths whose changes alone never make a release, e.g. `**/*.md`."
    )

    @field_validator("directory")
    @classmethod
    def _relative_directory(cls, value: str) -> str:
        return relative_path(value)


class App(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="App name, e.g. `web`.")
    path: str = Field(min_length=1, description="Directory of the app's manifests inside each environment branch.")
    images: list[Image] = Field(
        default_factory=list, description="Images released together as one release (pinned by digest)."
    )
    git: ConfigSource | None = Field(
        None,
        description="Where the app's config comes from, if promoflow releases it too: a branch of a git "
        "repository. An app without images has config-only releases.",
    )
    health_checks: list[HealthCheck] = Field(default_factory=list)
    metric_checks: list[MetricCheck] = Field(
        default_factory=list, description="Prometheus queries that must hold after the change (see `prometheus`)."
    )
    environments: list[str] | None = Field(
        None, description="Environments this app passes through, by name (default: all, in order)."
    )

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        return relative_path(value)

    def directory(self, environment: Environment) -> str:
        """Where this app's manifests are in the environment's branch."""
        return posixpath.join(environment.path, self.path) if environment.path else self.path

    def helm_values(self) -> dict[str, HelmValues]:
        """Image name -> where a Helm values file pins it."""
        return {image.name: image.helm for image in self.images if image.helm is not None}

    def values_files(self) -> list[str]:
        """The Helm values files its images are pinned in, for `helm template -f`."""
        return list(dict.fromkeys(helm.file for helm in self.helm_values().values()))

    @model_validator(mode="after")
    def _unique_images(self) -> App:
        if not self.images and self.git is None:
            raise ValueError("an app needs `images`, a `git` config source, or both")
        issues = image_name_issues(self)
        if issues:
            raise NameIssues(issues)
        values = [
            (image.helm.file, path)
            for image in self.images
            if image.helm is not None
            for path in {image.helm.repository, image.helm.tag, image.helm.digest} - {None}
        ]
        twice = next((place for place in values if values.count(place) > 1), None)
        if twice is not None:
            raise ValueError(f"two images are pinned at {twice[1]} of {twice[0]}: give each image its own values")
        return self


class Group(Strict):
    """Apps promoted as one release: each environment gets every member before the next environment
    gets any, and a member that fails there stops the group (members already changed are rolled back)."""

    name: str = Field(
        pattern=NAME_PATTERN, description="Group name, e.g. `shop`; it must differ from every app's name."
    )
    apps: list[str] = Field(min_length=2, description="Member apps, by name; an app belongs to one group at most.")
    concurrency: int = Field(
        4,
        ge=1,
        le=32,
        description="How many members are promoted into an environment at once (1: one after another, in order).",
    )
    bundle_request: bool = Field(
        False,
        description="One promotion request per environment for the whole bundle: one branch with every member's "
        "change, one pull request, one approval, one merge. Each member is still applied, verified and recorded "
        "on its own.",
    )


class Freeze(Strict):
    """A planned freeze: no promotion enters `environment` from `start` until `end` (rollbacks still do)."""

    environment: str = Field(description="The environment frozen, by name.")
    start: AwareDatetime = Field(description="When it begins: ISO 8601 with a zone, e.g. 2026-12-20T00:00:00+01:00.")
    end: AwareDatetime = Field(description="When it ends (promotions held by it go on then).")
    reason: str = Field(min_length=1, max_length=500, description="Why, as `promoflow status` shows it.")

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> Freeze:
        if self.end <= self.start:
            raise ValueError("`end` must be after `start`")
        return self


class Promotions(Strict):
    """promotions.yaml: where releases come from and the environments they pass through."""

    version: Literal[1] = Field(1, description="Schema version of this file.")
    repository: Repository
    environments: list[Environment] = Field(
        min_length=1, description="Environments in promotion order, e.g. dev, staging, prod."
    )
    apps: list[App] = Field(min_length=1)
    groups: list[Group] = Field(
        default_factory=list,
        description="Apps promoted together as one release (a bundle): `promoflow pipeline GROUP`, "
        "`promoflow promote GROUP --to ENV`.",
    )
    freezes: list[Freeze] = Field(
        default_factory=list,
        description="Planned freezes: promotions into the environment wait while one lasts (`promoflow freeze` "
        "adds one from the command line).",
    )

    @model_validator(mode="before")
    @classmethod
    def _repository_defaults(cls, data: object) -> object:
        """Fill in what the repository's layout and forge imply, so the rest of promoflow sees one shape."""
        return with_defaults(data)

    @model_validator(mode="after")
    def _unique_names(self) -> Promotions:
        issues = promotions_name_issues(self) + layout_issues(self) + metric_check_issues(self)
        if issues:
            raise NameIssues(issues)
        return self

    def route(self, app: str) -> list[Environment]:
        """The environments an app passes through, in promotion order."""
        wanted = self.app(app).environments
        return [e for e in self.environments if wanted is None or e.name in wanted]

    def environment(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        known = ", ".join(e.name for e in self.environments)
        raise UnknownName(f"Unknown environment {name!r}: promotions.yaml defines {known}.")

    def app(self, name: str) -> App:
        for app in self.apps:
            if app.name == name:
                return app
        known = ", ".join(a.name for a in self.apps)
        groups = ", ".join(g.name for g in self.groups)
        also = f" (and the group{'s' if len(self.groups) > 1 else ''} {groups})" if groups else ""
        raise UnknownName(f"Unknown app {name!r}: promotions.yaml defines {known}{also}.")

    def group(self, name: str) -> Group | None:
        return next((g for g in self.groups if g.name == name), None)

    def group_or_app(self, name: str) -> Group | None:
        """The group named `name`, or None when it names an app; raises for a name that is neither."""
        group = self.group(name)
        if group is None:
            self.app(name)
        return group

    def group_of(self, app: str) -> Group | None:
        return next((g for g in self.groups if app in g.apps), None)

    def group_route(self, group: Group) -> list[Environment]:
        """The environments any member passes through, in promotion order."""
        names = {e.name for app in group.apps for e in self.route(app)}
        return [e for e in self.environments if e.name in names]

    def previous(self, app: str, env: str) -> Environment | None:
        route = [e.name for e in self.route(app)]
        name = self.environment(env).name
        if name not in route:
            raise UnknownName(f"App {app!r} is not promoted to {name!r}: its environments are {', '.join(route)}.")
        index = route.index(name)
        return self.environment(route[index - 1]) if index else None


class UnknownName(NotFound):
    """An app or environment name that promotions.yaml does not define."""


# Uniqueness and reference checks. They report every issue with where it is (a path
# relative to the model being checked), so `promoflow.config_loader` can point at the
# offending line. They accept validated models and raw parsed YAML alike: the loader runs
# them on the raw data too, so they are reported even when other fields fail to validate
# (pydantic skips "after" validators then).

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class NameIssue:
    loc: Loc
    message: str
    first: Loc | None = None  # for a duplicate: where the name was first defined

    def __str__(self) -> str:
        where = f" (first defined at {format_loc(self.first)})" if self.first is not None else ""
        return f"{format_loc(self.loc)}: {self.message}{where}"


class NameIssues(ValueError):
    """Raised by the model validators; `issues` says what is wrong where."""

    def __init__(self, issues: list[NameIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))


def format_loc(loc: tuple[object, ...]) -> str:
    """`("environments", 1, "approval")` -> `environments[1].approval`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _get(obj: object, key: str) -> object:
    if isinstance(obj, Mapping):
        return obj.get(key)
    if isinstance(obj, BaseModel):
        return getattr(obj, key, None)
    return None


def _items(obj: object, key: str) -> list[object]:
    value = _get(obj, key)
    return list(value) if isinstance(value, list | tuple) else []


def _duplicates(items: list[object], key: str, list_loc: Loc, what: str) -> list[NameIssue]:
    issues: list[NameIssue] = []
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        value = _get(item, key)
        if not isinstance(value, str):
            continue  # wrong types are reported by the field validation
        if value in first:
            where = (*list_loc, first[value], key)
            issues.append(NameIssue((*list_loc, index, key), f"duplicate {what} {value!r}", where))
        else:
            first[value] = index
    return issues


DEFAULT_BRANCH = "main"


def with_defaults(data: object) -> object:
    """Raw promotions.yaml data with the defaults that depend on the repository filled in.

    `layout: directories`: each environment's branch is the repository's, its path `clusters/<name>`.
    `forge: github`: approvals come from pull request reviews unless an environment says otherwise.
    Entries it cannot read are left as they are, for validation to report.
    """
    if not isinstance(data, Mapping):
        return data
    repository = data.get("repository")
    environments = data.get("environments")
    if not isinstance(repository, Mapping) or not isinstance(environments, list):
        return data
    directories = repository.get("layout") == "directories"
    github = repository.get("forge") == "github"
    branch = repository.get("branch") or DEFAULT_BRANCH
    filled = []
    for env in environments:
        if isinstance(env, Mapping):
            env = {**env}
            if directories:
                env.setdefault("branch", branch)
                if "path" not in env and isinstance(env.get("name"), str):
                    env["path"] = f"clusters/{env['name']}"
            approval = env.get("approval")
            if github and isinstance(approval, Mapping) and "sources" not in approval:
                env["approval"] = {**approval, "sources": ["forge"]}
        filled.append(env)
    return {**data, "environments": filled}


def layout_issues(promotions: object) -> list[NameIssue]:
    """Environments that do not fit the repository's layout or forge (after `with_defaults`)."""
    repository = _get(promotions, "repository")
    directories = _get(repository, "layout") == "directories"
    branch = _get(repository, "branch") or DEFAULT_BRANCH
    issues = []
    github = _get(repository, "github") is not None
    if (_get(repository, "forge") == "github") != github:
        where = ("repository", "github") if github else ("repository", "forge")
        issues.append(NameIssue(where, "`forge: github` and a `github:` section go together"))
    if directories and _get(repository, "promote") == "branch":
        issues.append(
            NameIssue(
                ("repository", "promote"),
                "`promote: branch` merges environment branches: it needs `layout: branches`",
            )
        )
    for index, group in enumerate(_items(promotions, "groups")):
        if _get(group, "bundle_request") is True and _get(repository, "promote") == "branch":
            issues.append(
                NameIssue(
                    ("groups", index, "bundle_request"),
                    "with `promote: branch` every request already merges a whole environment branch: remove "
                    "`bundle_request`",
                )
            )
    if not directories and _get(repository, "branch") is not None:
        issues.append(
            NameIssue(
                ("repository", "branch"),
                "`branch` is the one branch of `layout: directories`; with branches, each environment names its own",
            )
        )
    for index, env in enumerate(_items(promotions, "environments")):
        if directories and _get(env, "branch") not in (None, branch):
            issues.append(
                NameIssue(
                    ("environments", index, "branch"),
                    f"with `layout: directories` every environment lives on the repository's branch {branch!r}: "
                    "remove this `branch`",
                )
            )
        if not directories and _get(env, "path"):
            issues.append(
                NameIssue(("environments", index, "path"), "an environment `path` needs `layout: directories`")
            )
        if _get(repository, "forge") != "github":
            if _items(env, "checks"):
                issues.append(NameIssue(("environments", index, "checks"), "`checks` are read from `forge: github`"))
            if "forge" in _items(_get(env, "approval"), "sources"):
                issues.append(
                    NameIssue(
                        ("environments", index, "approval", "sources"),
                        "approvals from `forge` are pull request reviews: they need `forge: github`",
                    )
                )
    return issues


def image_name_issues(app: object) -> list[NameIssue]:
    """Duplicate image names in one app (locations relative to the app)."""
    return _duplicates(_items(app, "images"), "name", ("images",), "image name")


def promotions_name_issues(promotions: object) -> list[NameIssue]:
    """Duplicate environment/branch/app names and unknown environments named by apps."""
    environments = _items(promotions, "environments")
    apps = _items(promotions, "apps")
    issues = _duplicates(environments, "name", ("environments",), "environment name")
    if _get(_get(promotions, "repository"), "layout") == "directories":
        issues += _duplicates(environments, "path", ("environments",), "environment path")
    else:
        issues += _duplicates(environments, "branch", ("environments",), "environment branch")
    issues += _duplicates(apps, "name", ("apps",), "app name")
    groups = _items(promotions, "groups")
    issues += _duplicates(groups, "name", ("groups",), "group name")
    app_names = list(dict.fromkeys(n for n in (_get(app, "name") for app in apps) if isinstance(n, str)))
    member_of: dict[str, Loc] = {}
    for g, group in enumerate(groups):
        name = _get(group, "name")
        if isinstance(name, str) and name in app_names:
            issues.append(NameIssue(("groups", g, "name"), f"group name {name!r} is also an app's name"))
        for m, member in enumerate(_items(group, "apps")):
            if not isinstance(member, str):
                continue
            loc: Loc = ("groups", g, "apps", m)
            if member not in app_names:
                close = difflib.get_close_matches(member, app_names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                issues.append(NameIssue(loc, f"unknown app {member!r}{hint} (defined: {', '.join(app_names)})"))
            elif member in member_of:
                issues.append(NameIssue(loc, f"app {member!r} is already in a group", member_of[member]))
            else:
                member_of[member] = loc
    known = list(dict.fromkeys(n for n in (_get(env, "name") for env in environments) if isinstance(n, str)))
    named: list[tuple[Loc, object]] = [
        (("apps", a, "environments", r), name)
        for a, app in enumerate(apps)
        for r, name in enumerate(_items(app, "environments"))
    ]
    named += [
        (("freezes", f, "environment"), _get(freeze, "environment"))
        for f, freeze in enumerate(_items(promotions, "freezes"))
    ]
    for loc, name in named:
        if isinstance(name, str) and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            issues.append(NameIssue(loc, f"unknown environment {name!r}{hint} (defined: {', '.join(known) or 'none'})"))
    return issues


def name_issues(promotions: object) -> list[NameIssue]:
    """All uniqueness/reference issues of a whole promotions.yaml, relative to its top."""
    issues = promotions_name_issues(promotions) + layout_issues(promotions) + metric_check_issues(promotions)
    for a, app in enumerate(_items(promotions, "apps")):
        for issue in image_name_issues(app):
            first = ("apps", a, *issue.first) if issue.first is not None else None
            issues.append(NameIssue(("apps", a, *issue.loc), issue.message, first))
    return issues


def json_schema() -> dict[str, object]:
    schema = Promotions.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "promoflow promotions.yaml"
    return schema
