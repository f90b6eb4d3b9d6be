"""The `promoflow` command line.

Read commands (validate, schema, status, history) never import Prefect, so they answer at once;
commands that run flows import it when they run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.text import Text

from promoflow import settings, tables
from promoflow.errors import PromoflowError, TerminalError

if TYPE_CHECKING:
    from datetime import datetime

    from promoflow.config import Group
    from promoflow.project import Project
    from promoflow.records import Bundle, Database, Promotion

app = typer.Typer(
    name="promoflow",
    help="Promote releases through environments (dev -> staging -> prod) with promotion requests, "
    "approvals, an audit trail and rollback. Built on Prefect.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
release_app = typer.Typer(help="Manage releases: clear a rejection.", no_args_is_help=True)
server_app = typer.Typer(
    help="Run the local Prefect server promoflow uses (kept in the state directory).", no_args_is_help=True
)
images_app = typer.Typer(
    help="Tag policies: pick a tag from a list (for scripts and debugging), preview an app's picks.",
    no_args_is_help=True,
)
sandbox_app = typer.Typer(
    help="Local stand-ins for what cannot run on one machine (simulated, for trying promoflow out).",
    no_args_is_help=True,
)
app.add_typer(images_app, name="images")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(release_app, name="release")
app.add_typer(server_app, name="server")

# Markup and emoji codes off: user, config and server text (`[a-z]`, `:x:`) is printed as it is.
out = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
err = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        help="promotions.yaml to use (default: $PROMOFLOW_CONFIG or ./promotions.yaml)",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NoWaitOption = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help="Hand the run to the served deployments (`python -m deployments.serve` or a worker) and return at "
        "once with its ids; follow it with `promoflow status`.",
    ),
]
AsOption = Annotated[
    str | None,
    typer.Option("--as", help="Who is acting (default: $PROMOFLOW_USER or $USER).", show_default=False),
]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def main() -> None:
    app()


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn promoflow's own errors into one sentence on stderr and an exit code, never a traceback."""
    from sqlalchemy.exc import OperationalError

    from promoflow.config_loader import ConfigError
    from promoflow.redact import redact

    try:
        yield
    except ConfigError as error:
        err.print(str(error))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OperationalError as error:
        reason = redact(str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__)
        err.print(f"error: Cannot use the records database ({reason}); check PROMOFLOW_DATABASE_URL.")
        raise typer.Exit(EXIT_FAILED) from None
    except PromoflowError as error:
        err.print(f"error: {error}")
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def _project(config: str | None) -> Project:
    from promoflow.project import Project

    return Project.load(config)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"promoflow {version('promoflow')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print promoflow's version and exit.")
    ] = False,
) -> None:
    pass


# -- configuration ------------------------------------------------------------------------------


class Forge(StrEnum):
    local = "local"
    github = "github"


class Layout(StrEnum):
    branches = "branches"
    directories = "directories"


@app.command()
def init(
    repo: Annotated[
        str, typer.Option(help="The environments repository: a git URL, or a path (written relative to the file).")
    ],
    app_paths: Annotated[
        list[str],
        typer.Option("--app", metavar="NAME=PATH", help="An app and its manifests' directory in each environment."),
    ],
    images: Annotated[
        list[str] | None,
        typer.Option(
            "--image", metavar="[APP=]IMAGE", help="An image of an app, as written in its manifests (repeatable)."
        ),
    ] = None,
    envs: Annotated[str, typer.Option(help="The environments, in promotion order.")] = "dev,staging,prod",
    forge: Annotated[
        Forge, typer.Option(help="`local` (branches + records) or `github` (pull requests; --repo is its URL).")
    ] = Forge.local,
    layout: Annotated[
        Layout, typer.Option(help="`branches`: one branch per environment; `directories`: clusters/<env> on one.")
    ] = Layout.branches,
    config: ConfigOption = None,
) -> None:
    """Write a commented promotions.yaml for an existing environments repository (never over an existing file).

    Each environment gets the branch the repository already has (env/NAME, NAME or environments/NAME), the
    first promotes without approval, the next ones wait for one; each image is read from its registry.
    Example: promoflow init --repo https://github.com/acme/deploy.git --app web=apps/web --image ghcr.io/acme/web
    """
    from promoflow import scaffold
    from promoflow.config_loader import load

    path = settings.config_path(config, resolve=False)
    with _user_errors():
        if path.exists() or path.is_symlink():
            raise TerminalError(f"{path} already exists: edit it, or give another file with --config.")
        apps = scaffold.parse_apps(app_paths, images or [])
        environments = scaffold.parse_environments(envs)
        local = "://" not in repo and not repo.startswith("git@")
        url = os.path.relpath(Path(repo).resolve(), path.resolve().parent) if local else repo
        branches = scaffold.existing_branches(str(Path(repo).resolve()) if local else repo)
        text = scaffold.promotions_yaml(url, environments, apps, forge.value, layout.value, branches)
        draft = path.with_name(f".{path.name}.init")
        draft.write_text(text)
        try:
            load(draft)  # as `validate` will: what init writes is valid
        except BaseException:
            draft.unlink()
            raise
        draft.replace(path)
    out.print(f"Wrote {path}: check it, then `promoflow validate` and `promoflow images preview APP`.")
    if branches is None:
        err.print(f"Could not list the branches of {repo}: each environment's branch is env/NAME; check them.")


@app.command()
def validate(
    file: Annotated[
        str | None, typer.Argument(help="File to check (default: ./promotions.yaml)", show_default=False)
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check promotions.yaml: every problem with file:line:column (exit 2 if any)."""
    from dataclasses import asdict

    from promoflow.config_loader import ConfigError, load

    path = settings.config_path(file, resolve=False)
    if as_json:
        try:
            load(path)
            problems = []
        except ConfigError as error:
            problems = [asdict(problem) for problem in error.problems]
        out.print_json(json.dumps({"file": str(path), "valid": not problems, "problems": problems}))
        if problems:
            raise typer.Exit(EXIT_BAD_INPUT)
        return
    with _user_errors():
        config = load(path)
    out.print(f"{path}: valid ({len(config.environments)} environments, {len(config.apps)} apps)")


@app.command()
def schema() -> None:
    """Print the JSON Schema of promotions.yaml (for editor completion)."""
    from promoflow.config import json_schema

    out.print_json(json.dumps(json_schema()))


# -- reading the records --------------------------------------------------------------------------


@app.command()
def status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """What runs where: current and last known good release per app and environment (and a release being merged
    there, whose merge is not recorded yet), and for each group the bundle an environment runs (when every member
    there runs that bundle's release); and what waits: each unfinished promotion, what it waits for (approvals n
    of m, checks, a freeze, a window), since when, who may approve, and the command or link that decides it; and
    each freeze holding an environment now, with its reason and end."""
    from datetime import UTC, datetime

    from promoflow.holds import freezes
    from promoflow.waits import waits

    with _user_errors():
        project = _project(config)
        db = project.db
        running = _bundles_running(project)
        now = datetime.now(UTC)
        frozen = {
            env.name: [f.as_dict() for f in freezes(project, env.name, now)] for env in project.config.environments
        }
        rows: list[dict[str, Any]] = []
        for app_config in project.config.apps:
            group = project.config.group_of(app_config.name)
            for env in project.config.route(app_config.name):
                state = db.environment_state(app_config.name, env.name)
                bundle = running.get((group.name, env.name)) if group else None
                merging = db.merging(app_config.name, env.name)
                rows.append(
                    {
                        "app": app_config.name,
                        "environment": env.name,
                        "current_release": _release_ref(db, state.current_release if state else None),
                        "since": _iso(state.since) if state else None,
                        "current_promotion": state.current_promotion if state else None,
                        "last_known_good": _release_ref(db, state.last_known_good if state else None),
                        "verified_at": _iso(state.verified_at) if state else None,
                        "rollback_target": _release_ref(db, db.rollback_target(app_config.name, env.name)),
                        "rejected_releases": sorted(db.rejected(app_config.name, env.name)),
                        "group": group.name if group else None,
                        "bundle": {"id": bundle.id, "label": bundle.label} if bundle else None,
                        "waiting": [w.as_dict() for w in waits(project, app_config.name, env.name)],
                        "freezes": frozen[env.name],
                        "merging": {"promotion": merging.id, "release": _release_ref(db, merging.release_id)}
                        if merging
                        else None,
                    }
                )
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = tables.table(
        "promoflow status",
        *("app", "environment", "current", "since", "last known good", "rollback to", "rejected"),
        whole=("app", "environment", "rejected"),
    )
    for row in rows:
        merging = row["merging"]
        table.add_row(
            row["app"],
            row["environment"],
            _label(row["current_release"])
            + (f" (merging {_label(merging['release'])}: promotion {merging['promotion']})" if merging else ""),
            _short_time(row["since"]),
            _label(row["last_known_good"]),
            _label(row["rollback_target"]),
            str(len(row["rejected_releases"]) or ""),
        )
    tables.show(out, table)
    if any(frozen.values()):
        table = tables.table("frozen", *("environment", "reason", "by", "since", "until"), whole=("environment",))
        for name, active in frozen.items():
            for f in active:
                until = _short_time(f["until"]) if f["until"] else "until lifted"
                table.add_row(name, f["reason"], f["by"], _short_time(f["since"]), until)
        tables.show(out, table)
    waiting = [(row, wait) for row in rows for wait in row["waiting"]]
    if waiting:
        table = tables.table(
            "waiting",
            *("promotion", "app", "environment", "release", "waits for", "since", "may approve"),
            whole=("promotion", "app", "environment"),
        )
        for row, wait in waiting:
            table.add_row(
                str(wait["promotion"]) + ("" if wait["kind"] == "promotion" else f" ({wait['kind']})"),
                row["app"],
                row["environment"],
                wait["release"],
                wait["waiting_for"],
                _short_time(wait["since"]),
                wait["may_approve"] or "-",
            )
        tables.show(out, table)
        for row, wait in waiting:
            if wait["decide"]:
                out.print(
                    f"Promotion {wait['promotion']} ({row['app']} into {row['environment']}): "
                    + " or ".join(wait["decide"])
                )
    if not project.config.groups:
        return
    groups = tables.table(
        "groups",
        *("group", "environment", "bundle"),
        whole=("group", "environment"),
        caption="bundle: the one whose release every member runs there",
    )
    for group in project.config.groups:
        for env in project.config.group_route(group):
            bundle = running.get((group.name, env.name))
            groups.add_row(group.name, env.name, f"{bundle.id} ({bundle.label})" if bundle else "-")
    tables.show(out, groups)


def _bundles_running(project: Project) -> dict[tuple[str, str], Bundle]:
    """(group, environment) -> the newest bundle whose releases every member on that environment's route runs."""
    db, config = project.db, project.config
    running: dict[tuple[str, str], Bundle] = {}
    for group in config.groups:
        bundles = db.bundles(group.name)
        for env in config.group_route(group):
            states = {app: db.environment_state(app, env.name) for app in group.apps if env in config.route(app)}
            current = {app: state.current_release if state else None for app, state in states.items()}
            found = next((b for b in bundles if all(b.members().get(a) == r for a, r in current.items())), None)
            if found is not None:
                running[(group.name, env.name)] = found
    return running


@app.command()
def history(
    app_name: Annotated[
        str | None, typer.Argument(metavar="APP", help="Only this app, or the members of this group.")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    limit: Annotated[int, typer.Option(help="Newest promotions to show.")] = 50,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Who promoted what, where, when, with whose approval, and how each step went; the bundle a promotion
    belongs to when it promoted a group."""
    with _user_errors():
        project = _project(config)
        apps: str | list[str] | None = app_name
        if app_name:
            group = project.config.group_or_app(app_name)
            apps = group.apps if group else app_name
        if env:
            project.config.environment(env)
        db = project.db
        entries = [_history_entry(db, p) for p in db.promotions(apps, env, limit)]
    if as_json:
        out.print_json(json.dumps(entries))
        return
    if not entries:
        out.print("No promotions yet: `promoflow promote APP --to ENV` or `promoflow demo` makes some.")
        return
    bundles = any(e["bundle_id"] for e in entries)
    columns = ["id", "app", "env", "release", *(["bundle"] if bundles else []), "state", "by"]
    table = tables.table(
        "promoflow history", *columns, *("approved by", "when (UTC)", "took"), whole=("id", "app", "env", "took")
    )
    for e in entries:
        approved = ", ".join(f"{a['approver']} ({a['source']})" for a in e["approvals"] if a["counted"])
        table.add_row(
            str(e["id"]),
            e["app"],
            e["environment"],
            e["release"]["label"],
            *([e["bundle_id"] or "-"] if bundles else []),
            _kind_and_state(e["kind"], e["state"]) + _overridden(e),
            e["requested_by"],
            approved,
            _short_time(e["created_at"]),
            _took(e["duration_seconds"]),
        )
    tables.show(out, table)
    for e in entries:
        if e["overridden_by"]:
            what = " and ".join(
                w
                for w, given in (("freezes and windows", e["override_freeze"]), ("the order", e["skip_order"]))
                if given
            )
            out.print(Text.assemble((f"{e['id']}:", "dim"), f" {e['overridden_by']} overrode {what}: {e['reason']}"))
    failed = [e for e in entries if e["error"]]
    for e in failed[:5]:
        out.print(Text.assemble((f"{e['id']}:", "dim"), f" {e['error']}"))


def _history_entry(db: Database, promotion: Promotion) -> dict[str, Any]:
    from promoflow.records import as_dict

    assert promotion.id is not None
    entry = as_dict(promotion)
    entry["release"] = _release_ref(db, promotion.release_id)
    entry.pop("slot", None)
    ended, created = promotion.ended_at, promotion.created_at
    entry["duration_seconds"] = round((ended - created).total_seconds(), 3) if ended and created else None
    entry["approvals"] = [
        {k: v for k, v in as_dict(a).items() if k not in ("id", "promotion_id")} for a in db.approvals(promotion.id)
    ]
    entry["steps"] = [
        {k: v for k, v in as_dict(s).items() if k not in ("id", "promotion_id")} | {"detail": json.loads(s.detail)}
        for s in db.steps(promotion.id)
    ]
    entry["metric_samples"] = [
        {k: v for k, v in as_dict(m).items() if k not in ("id", "promotion_id")}
        for m in db.metric_samples(promotion.id)
    ]
    return entry


@app.command()
def report(
    app_name: Annotated[
        str | None,
        typer.Argument(metavar="[APP|GROUP]", help="Only this app, or the members of this group (default: all apps)."),
    ] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Start of the period: a date or time, UTC unless it says (default: 30 days before --until)."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="End of the period (default: now).")] = None,
    html: Annotated[
        Path | None, typer.Option("--html", metavar="FILE", help="Write one self-contained page with charts to FILE.")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delivery metrics from the records, per environment and app: deployments, deployment frequency, lead
    time, change failure rate and time to restore, each with its DORA band and the counts behind it (the
    README defines each)."""
    from datetime import UTC, datetime

    with _user_errors():
        if as_json and html:
            raise TerminalError("--json and --html write one thing each: choose one.")
        from promoflow import metrics
        from promoflow.metrics.load import project_report

        period = metrics.period(since, until, datetime.now(UTC))
        result = project_report(_project(config), app_name, env, period)
        if html:
            from promoflow.metrics.page import render

            try:
                html.write_text(render(result))
            except OSError as error:
                raise TerminalError(f"Cannot write {html}: {error.strerror or error}.") from None
            out.print(f"Wrote {html}")
            return
    if as_json:
        out.print_json(json.dumps(result.as_json()))
        return
    from promoflow.metrics.text import COLUMNS, rows

    table = tables.table(
        f"promoflow report: {result.scope}, {period.since:%Y-%m-%d} to {period.until:%Y-%m-%d} UTC",
        *COLUMNS,
        whole=("environment", "app"),
    )
    for row in rows(result):
        table.add_row(*row.values())
    tables.show(out, table)


# -- acting -----------------------------------------------------------------------------------------


@app.command()
def promote(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="App (or group of apps) to promote.")],
    to: Annotated[str, typer.Option("--to", help="Environment to promote into.")],
    release: Annotated[
        str | None,
        typer.Option(
            help="Release id, label or tag; for a group, a bundle id or label (default: the newest the tag policy "
            "allows, with the newest config commit, that is not rejected for this environment)."
        ),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the records).")] = "",
    override_freeze: Annotated[
        bool,
        typer.Option(
            "--override-freeze",
            help="Go through the environment's freezes and closed windows (only its `override_by` people; needs "
            "--reason; recorded and shown in `promoflow history`).",
        ),
    ] = False,
    skip_order: Annotated[
        bool,
        typer.Option(
            "--skip-order",
            help="A hotfix: take the release past environments before this one that it has not been through (only "
            "the environment's `override_by` people; needs --reason; recorded and shown in `promoflow history`).",
        ),
    ] = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="Promote at this time and not before: ISO 8601 with a zone (2026-12-05T10:00:00+01:00) or from now "
            "(+2h). A scheduled run of the served `promote` deployment, visible in the Prefect UI; the release is "
            "chosen now. `promoflow scheduled` lists such runs, `promoflow cancel RUN` cancels one.",
        ),
    ] = None,
    no_wait: NoWaitOption = False,
    as_user: AsOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Promote a release of APP (or every member of a GROUP's bundle) into one environment, now or --at a time
    (waits for approvals if the policy needs them, and while the environment is frozen, outside its windows or
    the release still soaks in the environment before). When a member of a group fails, the members already
    changed there are rolled back."""
    with _user_errors():
        project = _project(config)
        group = project.config.group_or_app(app_name)
        requester = as_user or settings.current_user()
        overrides = {"override_freeze": override_freeze, "skip_order": skip_order}
        for flag, given in (("--override-freeze", override_freeze), ("--skip-order", skip_order)):
            if given:
                from promoflow.holds import check_override

                if group is not None:
                    raise TerminalError(f"{flag} takes one app: promote the group's members one by one.")
                check_override(project.config.environment(to), requester, reason, flag)
        if group is not None:
            if at is not None:
                raise TerminalError("--at schedules one app's promotion: schedule the members one by one.")
            _promote_group(project, group, to, release, reason, as_user)
            return
        chosen = _check_promotable(project, app_name, to, release, skip_order)
        if at is not None:
            parameters: dict[str, Any] = {"app": app_name, "environment": to, "release": chosen}
            parameters |= {"requested_by": requester}
            parameters |= {"reason": reason, "config": str(project.config_path), **overrides}
            _schedule(project, parameters, at, as_json)
            return
        if no_wait:
            from promoflow.promotion import start

            promotion = start(
                project,
                app_name,
                to,
                chosen,
                requester,
                reason=reason,
                override_freeze=override_freeze,
                skip_order=skip_order,
            )
            parameters = {"app": app_name, "environment": to, "release": promotion.release_id}
            _submit(
                project, "promote", parameters | {"requested_by": requester, "reason": reason}, as_json, promotion.id
            )
            return
        flows = _flows(project)
        pid = _result(
            flows.promote,
            {
                "app": app_name,
                "environment": to,
                "release": chosen,
                "requested_by": requester,
                "reason": reason,
                "config": str(project.config_path),
                **overrides,
            },
        )
        _print_outcome(project, pid)


def _schedule(project: Project, parameters: dict[str, Any], at: str, as_json: bool) -> None:
    """`promote --at`: a scheduled run of the served `promote` deployment."""
    from datetime import UTC, datetime

    from promoflow import links
    from promoflow.holds import stamp

    now = datetime.now(UTC)
    when = _moment(at, now, "--at")
    if when <= now:
        raise TerminalError(f"--at {at} has passed: give a time from now on, or leave --at out to promote now.")
    label = project.db.get_release(parameters["release"]).label
    what = f"{parameters['app']} {label} into {parameters['environment']}"
    _connect_prefect(project, start=False)
    from flows.schedule import schedule

    run = schedule("promote", parameters, when, f"promote {what.replace(' into ', ' to ')} at {stamp(when)}")
    if as_json:
        out.print_json(json.dumps({"flow_run": str(run.id), "at": when.isoformat(), "url": links.run_link(run.id)}))
        return
    url = links.run_link(run.id)
    out.print(
        f"Scheduled {what} for {stamp(when)} as flow run {run.id}" + (f" ({url})" if url else "") + f"; "
        f"`promoflow cancel {run.id}` cancels it."
    )


@app.command()
def scheduled(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Promotions and pipelines waiting for their time: scheduled runs of the served deployments (`promote --at`),
    soonest first, with what they will promote and the run id that `promoflow cancel` takes."""
    with _user_errors():
        project = _project(config)
        _connect_prefect(project, start=False)
        from flows.schedule import scheduled as waiting_runs

        runs = [r.as_dict() for r in waiting_runs()]
    if as_json:
        out.print_json(json.dumps(runs))
        return
    if not runs:
        out.print("Nothing is scheduled: `promoflow promote APP --to ENV --at TIME` schedules a promotion.")
        return
    table = tables.table("scheduled", *("at (UTC)", "flow run", "what", "by"), whole=("flow run",))
    for r in runs:
        table.add_row(
            r["at"][:16].replace("T", " "), r["flow_run"], r["name"], r["parameters"].get("requested_by") or "-"
        )
    tables.show(out, table)


@app.command()
def cancel(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Flow run id (see `promoflow scheduled`).")],
    as_user: AsOption = None,
    config: ConfigOption = None,
) -> None:
    """Cancel a promoflow flow run: a scheduled one never starts; a running one cancels its promotion (as Cancel
    in the Prefect UI: its request closed, nothing more merged)."""
    with _user_errors():
        project = _project(config)
        _connect_prefect(project, start=False)
        from flows.schedule import cancel as cancel_run

        said = cancel_run(run, as_user or settings.current_user())
    out.print(said)


def _result(flow: Any, parameters: dict[str, Any]) -> Any:
    """Run a flow here; its return value even when the run ended Cancelled (a promotion cancelled in the UI)."""
    state = flow(**parameters, return_state=True)
    return state.result(raise_on_failure=not state.is_cancelled())


def _promote_group(
    project: Project, group: Group, to: str, release: str | None, reason: str, as_user: str | None
) -> None:
    from promoflow.promotion import check_bundle_order, resolve_bundle

    project.config.environment(to)  # before a new bundle is recorded
    bundle = resolve_bundle(project, group, release, "promote")
    if not check_bundle_order(project, group, bundle, to):  # settles user mistakes before a flow starts
        out.print(f"Group {group.name} already runs bundle {bundle.label} ({bundle.id}) in {to}.")
        return
    flows = _flows(project)
    pids = flows.promote_bundle(
        group.name,
        to,
        bundle=bundle.id,
        requested_by=as_user or settings.current_user(),
        reason=reason,
        config=str(project.config_path),
    )
    for pid in pids:
        _print_outcome(project, pid)
    if not check_bundle_order(project, group, bundle, to):
        out.print(f"Group {group.name} runs bundle {bundle.label} ({bundle.id}) in {to}.")


@app.command()
def pipeline(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="App (or group of apps) to promote.")],
    release: Annotated[
        str | None,
        typer.Option(
            help="Release id, label, tag or config commit; for a group, a bundle id or label (default: the newest "
            "the tag policy allows, with the newest config commit, that is not rejected for the first environment)."
        ),
    ] = None,
    no_wait: NoWaitOption = False,
    as_user: AsOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Walk a release of APP (or a bundle of a GROUP: every member into each environment before the next)
    through its environments in order, stopping at the first failure."""
    with _user_errors():
        project = _project(config)
        group = project.config.group(app_name)
        if group is not None:
            from promoflow.promotion import resolve_bundle

            chosen = resolve_bundle(project, group, release, "pipeline").id
        else:
            chosen = _check_promotable(project, app_name, project.config.route(app_name)[0].name, release)
        if no_wait:
            parameters = {"app": app_name, "release": chosen, "requested_by": as_user or settings.current_user()}
            _submit(project, "pipeline", parameters, as_json, None)
            return
        flows = _flows(project)
        pids = _result(
            flows.pipeline,
            {
                "app": app_name,
                "release": chosen,
                "requested_by": as_user or settings.current_user(),
                "config": str(project.config_path),
            },
        )
        for pid in pids:
            _print_outcome(project, pid)


@app.command()
def watch(
    app_names: Annotated[list[str] | None, typer.Option("--app", help="Only this app (repeatable).")] = None,
    promote_new: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Start a pipeline for each new release.")
    ] = True,
    config: ConfigOption = None,
) -> None:
    """One watch cycle: look at every app's image sources and record each new release once.

    Each new release goes to the pipeline: to the served `pipeline` deployment if there is one (see
    deployments/), else run here. `python -m deployments.serve` runs this on a schedule.
    """
    with _user_errors():
        project = _project(config)
        for name in app_names or []:
            project.config.app(name)
        flows = _flows(project)
        found = flows.watch(config=str(project.config_path), apps=app_names or None, promote=promote_new)
        for release_id in found:
            release = project.db.get_release(release_id)
            out.print(f"New release of {release.app}: {release.label} ({release.id})")
        if not found:
            out.print("No new releases.")


@app.command()
def webhook(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a container).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8480,
    watch_here: Annotated[
        bool,
        typer.Option(
            help="Run the pipelines of the releases a push brings in this process too (no deployment, no worker) "
            "instead of handing them to the `pipeline` deployment's workers; on start, carry on the pipelines a "
            "receiver that ended before them left."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Receive registry push webhooks (Distribution, Docker Hub, GHCR, Harbor) and run `watch` for the apps
    they concern, here, in the background: each new release goes to a run of the `pipeline` deployment, which a
    worker starts within seconds of the push (with no worker serving it, the push goes to Prefect as an event for
    the `watch` deployment); and GitHub review, status and check deliveries, which wake the promotions waiting on
    them. The secret comes from $PROMOFLOW_WEBHOOK_SECRET; see docs/webhooks.md."""
    from promoflow import webhooks

    with _user_errors():
        secret = os.environ.get(webhooks.SECRET_ENV, "")
        webhooks.serve(settings.config_path(config), host, port, secret, watch_here=watch_here)


def _check_promotable(project: Project, app_name: str, env: str, release: str | None, skip_order: bool = False) -> str:
    """Settle every user mistake before a flow starts: unknown app, environment, release, order (unless a hotfix
    skips it)."""
    from promoflow import releases
    from promoflow.promotion import check_order, newest_allowed, sources
    from promoflow.records import Promotion

    app_config = project.config.app(app_name)
    project.config.previous(app_name, env)
    if release:
        chosen = releases.resolve(project.db, app_config, sources(project, app_config), release, "oci-layout")
    else:
        chosen, skipped = newest_allowed(project, app_config, env, "oci-layout")
        for sentence in skipped:
            err.print(sentence)
    check_order(
        project,
        Promotion(app=app_name, environment=env, release_id=chosen.id, requested_by="", skip_order=skip_order),
    )
    return chosen.id


@app.command()
def diff(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="App to compare.")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment (its cluster target must be kubernetes).")],
    release: Annotated[
        str | None, typer.Option(help="Preview promoting this release instead of the environment branch as it is.")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """What applying APP to ENV would change in the cluster: a server-side dry run, Secret data masked.

    Without --release it compares the environment branch with the cluster (drift); with --release,
    the branch as that release's promotion would leave it. Nothing is changed anywhere.
    """
    from promoflow import releases
    from promoflow.clusters.kubernetes import ObjectRef
    from promoflow.clusters.render import render
    from promoflow.gitops.manifests import pin_images
    from promoflow.promotion import sources

    with _user_errors():
        project = _project(config)
        app_config = project.config.app(app_name)
        project.config.previous(app_name, env)
        environment = project.config.environment(env)
        if environment.cluster.target != "kubernetes":
            raise TerminalError(f"{env} has cluster target {environment.cluster.target}: there is no cluster to diff.")
        chosen = (
            releases.resolve(project.db, app_config, sources(project, app_config), release, "diff") if release else None
        )

        def rendered(tree: Path) -> list[dict[str, Any]]:
            if chosen:  # in the workspace's working tree only: thrown away after
                pin_images(
                    tree / app_config.directory(environment), releases.pins_of(chosen), tree, app_config.helm_values()
                )
            return render(tree / app_config.directory(environment), tree, app_config.values_files())

        objects = project.workspace.on_branch(environment.branch, rendered)
        before = project.db.last_outcome(app_name, env, "apply") or {}
        previous = [ObjectRef.from_dict(r) for r in before.get("applied", [])]
        with project.cluster(environment) as cluster:
            changes = cluster.diff(app_name, env, objects, previous=previous)
    if as_json:
        out.print_json(json.dumps([{"object": str(c.ref), "action": c.action, "diff": c.diff} for c in changes]))
        return
    if not changes:
        out.print(f"No changes: the cluster matches {app_name} in {env}.")
    for change in changes:
        out.rule(f"{change.action}: {change.ref}")
        out.print(change.diff)


@app.command()
def approve(
    promotion: Annotated[int, typer.Argument(help="Promotion id (see `promoflow history`).")],
    comment: Annotated[str, typer.Option(help="Why (kept in the records).")] = "",
    as_user: AsOption = None,
    config: ConfigOption = None,
) -> None:
    """Approve a promotion that waits for approval (the same as Resume in the Prefect UI)."""
    _decide(promotion, "approve", comment, as_user, config)


@app.command()
def reject(
    promotion: Annotated[int, typer.Argument(help="Promotion id (see `promoflow history`).")],
    comment: Annotated[str, typer.Option(help="Why (kept in the records).")] = "",
    as_user: AsOption = None,
    config: ConfigOption = None,
) -> None:
    """Reject a promotion that waits for approval: it ends, nothing is merged."""
    _decide(promotion, "reject", comment, as_user, config)


def _decide(
    promotion_id: int,
    decision: Literal["approve", "reject"],
    comment: str,
    as_user: str | None,
    config: str | None,
) -> None:
    with _user_errors():
        project = _project(config)
        from promoflow import decisions
        from promoflow.promotion import require_decidable

        require_decidable(project.db.promotion(promotion_id))
        _connect_prefect(project, start=False)
        who = as_user or settings.current_user()
        _, woken = decisions.send(project, promotion_id, who, decision, comment)
    out.print(f"{'Approved' if decision == 'approve' else 'Rejected'} promotion {promotion_id} as {who}: {woken}.")


@app.command()
def freeze(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment to freeze.")],
    reason: Annotated[str, typer.Option(help="Why (shown by `promoflow status`, kept in the records).")],
    until: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="When it ends by itself: ISO 8601 with a zone (2026-12-24T18:00:00+01:00) or from now (+2h, +1d) "
            "(default: until `promoflow unfreeze`).",
        ),
    ] = None,
    as_user: AsOption = None,
    config: ConfigOption = None,
) -> None:
    """Freeze an environment: promotions into it wait before their merge (nothing is merged) until it is lifted
    with `promoflow unfreeze ENV` or --until passes. Rollbacks still go through; the environment's `override_by`
    people may promote with --override-freeze."""
    from datetime import UTC, datetime

    from promoflow.holds import stamp
    from promoflow.records import Freeze

    with _user_errors():
        project = _project(config)
        project.config.environment(env)
        now = datetime.now(UTC)
        end = _moment(until, now, "--until") if until else None
        if end is not None and end <= now:
            raise TerminalError(f"--until {until} has passed: give a time from now on.")
        if not reason.strip() or len(reason) > 500:
            raise TerminalError("Give a --reason of 1 to 500 characters: it tells people why they wait.")
        who = as_user or settings.current_user()
        project.db.freeze(Freeze(environment=env, reason=reason, frozen_by=who, since=now, until=end))
    ends = f"until {stamp(end)}" if end else f"until `promoflow unfreeze {env}`"
    out.print(f"Froze {env} as {who} ({reason}), {ends}: promotions into it wait before their merge.")


def _moment(text: str, now: datetime, option: str) -> datetime:
    from promoflow import timing

    try:
        return timing.moment(text, now)
    except ValueError as error:
        raise TerminalError(f"{option}: {error}.") from None


@app.command()
def unfreeze(
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment to unfreeze.")],
    as_user: AsOption = None,
    config: ConfigOption = None,
) -> None:
    """Lift the freezes `promoflow freeze` put on an environment; the promotions they held go on (their runs are
    woken). A freeze planned in promotions.yaml ends at its end, or when it is removed from the file."""
    from datetime import UTC, datetime

    from promoflow import holds

    with _user_errors():
        project = _project(config)
        project.config.environment(env)
        now = datetime.now(UTC)
        who = as_user or settings.current_user()
        lifted = project.db.lift_freezes(env, who, now)
        planned = holds.freezes(project, env, now)
        if not lifted and not planned:
            out.print(f"{env} is not frozen: nothing to lift.")
            return
        if not lifted:
            raise TerminalError(
                f"{env} is frozen by promotions.yaml ({'; '.join(f.describe() for f in planned)}): remove that freeze "
                "from the file to lift it, or promote with --override-freeze."
            )
        out.print(f"Lifted {len(lifted)} freeze{'s' if len(lifted) > 1 else ''} of {env} as {who}.")
        if planned:
            out.print(f"{env} stays frozen by promotions.yaml: {'; '.join(f.describe() for f in planned)}.")
            return
        for pid, said in _wake_held(project, env):
            out.print(f"Promotion {pid}: {said}.")


def _wake_held(project: Project, env: str) -> list[tuple[int, str]]:
    """Wake the promotions into `env` that a freeze held (a process holding one in place sees the records)."""
    from promoflow.engine.results import Gate, Waiting

    held = [
        p.id
        for p in project.db.active_promotions()
        if p.environment == env and p.waiting and Waiting.model_validate_json(p.waiting).gate == Gate.FREEZE
    ]
    if not held:
        return []
    try:
        _connect_prefect(project, start=False)
        from flows.resume import wake

        return [(pid, wake(project, pid)) for pid in held if pid is not None]
    except PromoflowError as error:
        return [(pid, f"not woken ({error}); the reconcile deployment carries it on") for pid in held if pid]


@app.command()
def rollback(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="App to roll back.")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment to roll back.")],
    to: Annotated[
        str | None,
        typer.Option(help="Release id, label or tag (default: the last known good before the current)."),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the records).")] = "manual rollback",
    as_user: AsOption = None,
    config: ConfigOption = None,
) -> None:
    """Put APP in an environment back on its last known good (or a named) release, now.

    A promotion waiting there for approval is superseded (its run cancelled, its pull request closed with a
    comment). Once the rollback holds the environment, the current release is marked rejected there, so
    automation does not promote it again until `promoflow release unreject`.
    """
    with _user_errors():
        project = _project(config)
        from promoflow.promotion import rollback_target

        rollback_target(project, app_name, env, to)  # settles user mistakes before a flow starts
        flows = _flows(project)
        pid = flows.rollback(
            app_name,
            env,
            to=to,
            reason=reason,
            requested_by=as_user or settings.current_user(),
            config=str(project.config_path),
        )
        _print_outcome(project, pid)


@app.command()
def resume(
    promotion_id: Annotated[int, typer.Argument(metavar="PROMOTION", help="Promotion id (see `promoflow status`).")],
    config: ConfigOption = None,
) -> None:
    """Carry on a promotion whose run is gone (its process was killed, the run crashed or was stopped): in a new
    run of the served deployment, or here when none is served. A run that is alive is left alone, a suspended
    one is woken."""
    with _user_errors():
        project = _project(config)
        promotion = project.db.promotion(promotion_id)
        from promoflow.engine.states import PromotionState

        state = PromotionState(promotion.state)
        if state.ended:
            raise TerminalError(f"Promotion {promotion_id} has ended ({state.words}): there is nothing to resume.")
        _flows(project)  # a local Prefect server if none is set, and the CLI's run settings
        from prefect.client.orchestration import get_client

        from flows.resume import carry_on, status, wake

        with get_client(sync_client=True) as client:
            found = status(client, promotion)
        if found.verdict == "busy":
            said = f"{found.why}: nothing to do"
        elif found.verdict == "suspended":
            said = wake(project, promotion_id)
        else:
            said = carry_on(project, promotion_id, found, here=True)
    out.print(f"Promotion {promotion_id}: {said}.", markup=False)


def _submit(project: Project, flow: str, parameters: dict[str, Any], as_json: bool, promotion_id: int | None) -> None:
    """Start a run of a served deployment and say its ids (`--no-wait`)."""
    _connect_prefect(project, start=False)
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from promoflow import links

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(f"{flow}/{flow}")
        except ObjectNotFound:
            raise TerminalError(
                f"No `{flow}` deployment is served: start `python -m deployments.serve` (or a worker), "
                "or leave out --no-wait to run it here."
            ) from None
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters=parameters | {"config": str(project.config_path)}
        )
    if promotion_id is not None:  # its run from now on: a reconcile meanwhile sees it pending, not gone
        project.db.update_promotion(promotion_id, flow_run_id=str(run.id))
    url = links.run_link(run.id)
    if as_json:
        out.print_json(json.dumps({"promotion": promotion_id, "flow_run": str(run.id), "url": url}))
        return
    what = f"Promotion {promotion_id}" if promotion_id is not None else f"The {flow}"
    out.print(f"{what} runs as flow run {run.id}" + (f": {url}" if url else "") + ".", markup=False)


@release_app.command("unreject")
def unreject(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    release: Annotated[str, typer.Argument(help="Release id, label or tag.")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment it was rejected for.")],
    config: ConfigOption = None,
) -> None:
    """Allow a rejected release into an environment again."""
    with _user_errors():
        project = _project(config)
        project.config.previous(app_name, env)
        found = project.db.release(app_name, release)
        if found is None or not project.db.clear_rejection(app_name, env, found.id):
            raise TerminalError(f"Release {release} of {app_name} is not rejected for {env}.")
    out.print(f"Release {found.label} ({found.id}) of {app_name} may be promoted to {env} again.")


# -- tag policies -------------------------------------------------------------------------------------


@images_app.command("select")
def images_select(
    tags: Annotated[
        list[str] | None, typer.Argument(help="Tags to choose from (default: one per line on stdin).")
    ] = None,
    semver: Annotated[str, typer.Option(help="Semver range (npm syntax): '>=1.2 <2', '^1.4', '~1.4.2', '1.x'.")] = "*",
    prerelease: Annotated[bool, typer.Option("--prerelease", help="Let prerelease versions be picked.")] = False,
    regex: Annotated[
        str | None, typer.Option(help="Only tags matching this regular expression anywhere (anchor with ^ and $).")
    ] = None,
    extract: Annotated[
        str | None, typer.Option(help="Order by this, built from the regex's captures: '$build', '${v}', '$1'.")
    ] = None,
    order: Annotated[
        str, typer.Option(help="semver, numerical or alphabetical (`created` needs build times: `images preview`).")
    ] = "semver",
    descending: Annotated[bool, typer.Option("--desc/--asc", help="Highest (default) or lowest value wins.")] = True,
    ignore: Annotated[list[str] | None, typer.Option(help="Glob of tags never to pick (repeatable).")] = None,
) -> None:
    """Print the tag a policy picks (exit 1 when none matches), the same way promoflow picks releases.

    Example: `promoflow images select --regex '^main-(?P<n>[0-9]+)-' --extract '$n' --order numerical < tags.txt`
    """
    from pydantic import ValidationError

    from promoflow.config import TagPolicy
    from promoflow.sources import policy

    if order == "created":
        err.print(
            "error: --order created picks the newest build, and a tag's build time is in its image, not its name: "
            "`promoflow images preview APP` shows each candidate's build time"
        )
        raise typer.Exit(EXIT_BAD_INPUT)

    try:
        chosen_policy = TagPolicy.model_validate(
            {
                "semver": semver,
                "prerelease": prerelease,
                "regex": regex,
                "extract": extract,
                "order": order,
                "direction": "desc" if descending else "asc",
                "ignore": ignore or [],
            }
        )
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"])
            err.print(f"error: {'--' + where + ': ' if where else ''}{problem['msg']}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    candidates = tags if tags else [line.strip() for line in sys.stdin if line.strip()]
    chosen = policy.select(candidates, chosen_policy)
    if chosen is None:
        err.print(f"error: none of {len(candidates)} tags matches ({policy.describe(chosen_policy)})")
        raise typer.Exit(EXIT_FAILED)
    out.print(chosen)


@images_app.command("preview")
def images_preview(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="App whose images to preview.")],
    top: Annotated[int, typer.Option(help="Candidates to show per image.")] = 5,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show each image's best candidate tags (best first, those rejected in an environment marked; with `order:
    created`, each one's build time) and the one `promoflow pipeline` would pick: the newest its policy allows
    that is not rejected for the first environment. Changes nothing."""
    from promoflow import releases
    from promoflow.promotion import sources
    from promoflow.sources import build_times, policy

    with _user_errors():
        project = _project(config)
        db = project.db
        app_config = project.config.app(app_name)
        found = sources(project, app_config)
        route = project.config.route(app_name)
        rejected_in: dict[tuple[str, str, str], list[str]] = {}  # (image, tag, digest) -> environments
        for env in route:
            for release_id in db.rejected(app_name, env.name):
                for pin in releases.pins_of(db.get_release(release_id)):
                    rejected_in.setdefault((pin.name, pin.tag, pin.digest), []).append(env.name)
        try:
            picked = releases.pick(app_config, found, route[0].name, db.rejected(app_name, route[0].name), "preview")
            pins = {pin.name: pin for pin in releases.pins_of(picked.release)}
        except TerminalError as error:  # no tag matches, or every one is rejected: shown, not a failure
            err.print(f"No pick: {error}")
            pins = {}
        previews: list[dict[str, Any]] = []
        for image in app_config.images:
            source = found.images[image.name]
            tags = source.tags()
            built = build_times(source)
            candidates = policy.ranked(tags, image.policy, top, built)
            times = {tag: built(tag) for tag in candidates} if image.policy.order == "created" else {}
            rejected: dict[str, list[str]] = {}
            for tag in candidates:
                if any(key[:2] == (image.name, tag) for key in rejected_in):  # only then: its digest now
                    envs = rejected_in.get((image.name, tag, source.digest(tag)))
                    if envs:
                        rejected[tag] = envs
            chosen = pins.get(image.name)
            previews.append(
                {
                    "image": image.name,
                    "policy": policy.describe(image.policy),
                    "tags": len(tags),
                    "candidates": candidates,
                    "built": {tag: _iso(time) for tag, time in times.items()},
                    "rejected": rejected,
                    "pick": chosen.tag if chosen else None,
                    "digest": chosen.digest if chosen else None,
                }
            )
    if as_json:
        out.print_json(json.dumps(previews))
        return
    table = tables.table(
        f"images of {app_name}", *("image", "policy", "tags", "candidates", "pick", "digest"), whole=("tags", "pick")
    )
    for p in previews:
        table.add_row(
            p["image"],
            p["policy"],
            str(p["tags"]),
            ", ".join(_candidate(tag, p) for tag in p["candidates"]),
            p["pick"] or "-",
            (p["digest"] or "-")[:19],
        )
    tables.show(out, table)


def _candidate(tag: str, preview: dict[str, Any]) -> str:
    """`1.2.0 (built 2026-12-01 10:00:00+00:00; rejected: prod)`: a candidate tag and what is known of it."""
    notes = []
    if tag in preview["built"]:
        built = preview["built"][tag]
        notes.append(f"built {built.replace('T', ' ')}" if built else "no build time")
    if tag in preview["rejected"]:
        notes.append(f"rejected: {', '.join(preview['rejected'][tag])}")
    return f"{tag} ({'; '.join(notes)})" if notes else tag


# -- stand-ins ------------------------------------------------------------------------------------------------


@sandbox_app.command("github")
def sandbox_github(
    repo: Annotated[
        list[str],
        typer.Option(metavar="OWNER/NAME=BARE_REPO_PATH", help="A repository to serve, backed by a bare git repo."),
    ],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (default: a free one).", show_default=False)] = 0,
) -> None:
    """Serve a simulated GitHub REST API at http://127.0.0.1:PORT/api/v3 until Ctrl-C.

    Pull requests, reviews, statuses, check runs, labels, comments and merges (merge, squash, rebase
    moving the branch in the real bare repository). Any token is accepted; the token names the user.
    Try it with PyGithub: Github(base_url=URL, auth=Auth.Token("alice")).
    """
    from promoflow.sandbox.github import serve

    repos: dict[str, Path] = {}
    for entry in repo:
        name, sep, path = entry.partition("=")
        if not sep or name.count("/") != 1 or not Path(path).is_dir():
            err.print(f"error: --repo {entry!r}: expected OWNER/NAME=PATH of an existing bare git repository")
            raise typer.Exit(EXIT_BAD_INPUT)
        repos[name] = Path(path).resolve()
    serve(repos, port)


@sandbox_app.command("kube")
def sandbox_kube(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (default: a free one).", show_default=False)] = 0,
    kubeconfig: Annotated[Path, typer.Option(help="Where to write a kubeconfig for it.")] = Path("sandbox.kubeconfig"),
) -> None:
    """Serve a simulated Kubernetes API until Ctrl-C, and write a kubeconfig (context `sandbox`) for it.

    kubectl and the kubernetes client work against it unchanged: every built-in kind of Kubernetes 1.37
    and CRDs, server-side apply with field ownership, watches, dry runs, finalizers, and simulated
    controllers that roll Deployments out (nothing runs).
    Try: KUBECONFIG=sandbox.kubeconfig kubectl apply --server-side -f deployment.yaml
    """
    from promoflow.sandbox.kube import serve

    serve(port, kubeconfig)


# -- the local Prefect server -------------------------------------------------------------------------


@server_app.command("start")
def server_start(config: ConfigOption = None) -> None:
    """Start the local Prefect server (UI and API) on 127.0.0.1."""
    from promoflow import server

    with _user_errors():
        running = server.start(settings.state_dir(settings.config_path(config)))
    out.print(f"Prefect server at {running.url} (pid {running.pid}); stop it with `promoflow server stop`.")


@server_app.command("stop")
def server_stop(config: ConfigOption = None) -> None:
    """Stop the local Prefect server."""
    from promoflow import server

    stopped = server.stop(settings.state_dir(settings.config_path(config)))
    out.print("Prefect server stopped." if stopped else "No local Prefect server was running.")


@server_app.command("status")
def server_status(config: ConfigOption = None) -> None:
    """Say whether the local Prefect server runs, and where."""
    from promoflow import server

    running = server.running(settings.state_dir(settings.config_path(config)))
    out.print(f"running at {running.url} (pid {running.pid})" if running else "not running")
    if not running:
        raise typer.Exit(EXIT_FAILED)


# -- the demo ---------------------------------------------------------------------------------------------


@app.command()
def demo(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve every step automatically (unattended).")] = False,
    reset: Annotated[bool, typer.Option(help="Throw away the demo's sandbox and records first.")] = False,
    keep_server: Annotated[bool, typer.Option(help="Leave the Prefect server running afterwards.")] = False,
    kube_context: Annotated[
        str | None,
        typer.Option(
            help="Deploy into this context of your kubeconfig (kind, minikube) instead of the simulated cluster: "
            "namespaces promoflow-demo-dev, -staging and -prod, web at 0 replicas."
        ),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="The kubeconfig holding --kube-context (default: $KUBECONFIG or ~/.kube/config)."),
    ] = None,
    registry: Annotated[
        bool | None,
        typer.Option(
            "--registry/--no-registry",
            help="Serve the images from a local registry (Debian's docker-registry) or read the OCI layout "
            "directory (default: the registry when docker-registry is installed).",
            show_default=False,
        ),
    ] = None,
    forge: Annotated[
        Forge,
        typer.Option(
            help="Where promotion requests live: `local` (branches + records) or `github` (pull requests on "
            "promoflow's GitHub stand-in, approved by reviews; started for the run)."
        ),
    ] = Forge.local,
) -> None:
    """Run the whole story on this machine: a new version goes dev -> staging -> prod, then rollbacks.

    Builds a sandbox in ./.promoflow (a git repo with env/dev, env/staging and env/prod branches, an
    OCI image-layout source), writes ./promotions.yaml if there is none, starts a local Prefect server
    and a simulated cluster (promoflow's Kubernetes API stand-in), each environment in its own namespace.
    Everything started is stopped at the end. Needs kubectl or kustomize (the manifests are a kustomization).
    """
    from promoflow import demo as demo_story

    with _user_errors():
        demo_story.run(
            Path.cwd(),
            out,
            yes=yes,
            reset=reset,
            keep_server=keep_server,
            kube_context=kube_context,
            kubeconfig=kubeconfig,
            registry=registry,
            forge=forge.value,
        )


# -- helpers -------------------------------------------------------------------------------------------------


class _Flows:
    """The flows, imported only by commands that run them (Prefect costs over a second to import)."""

    def __init__(self) -> None:
        from flows.pipeline import pipeline, promote_bundle
        from flows.promote import promote
        from flows.rollback import rollback
        from flows.watch import watch

        self.promote, self.pipeline, self.rollback, self.watch = promote, pipeline, rollback, watch
        self.promote_bundle = promote_bundle


def _flows(project: Project) -> _Flows:
    from promoflow import server

    _connect_prefect(project, start=True)
    server.without_heartbeat()
    return _Flows()


def _connect_prefect(project: Project, start: bool) -> None:
    from promoflow import server

    local = server.connect(project.state_dir, launch=start)
    if local:
        err.print(f"Using the local Prefect server at {local.url} (`promoflow server stop` stops it).")


def _print_outcome(project: Project, pid: int) -> None:
    """One line per promotion; a promotion that did not succeed (rejected, expired, ...) makes the exit code 1."""
    promotion = project.db.promotion(pid)
    release = project.db.get_release(promotion.release_id)
    line = f"Promotion {pid}: {promotion.kind} of {promotion.app} {release.label} into {promotion.environment}: "
    out.print(line + _state(promotion.state), markup=False)
    if promotion.state != "succeeded":
        if promotion.error:
            err.print(f"error: {promotion.error}", markup=False, highlight=False)
        raise typer.Exit(1)


def _release_ref(db: Database, release_id: str | None) -> dict[str, str] | None:
    if not release_id:
        return None
    release = db.get_release(release_id)
    ref = {"id": release.id, "label": release.label}
    return ref | {"commit": release.commit} if release.commit else ref


def _label(ref: dict[str, str] | None) -> str:
    from promoflow.records import release_name

    return release_name(ref["label"], ref["id"]) if ref else "-"


def _iso(value: Any) -> str | None:
    from promoflow.records import _utc

    return _utc(value).isoformat() if value else None  # type: ignore[union-attr]


def _short_time(value: str | None) -> str:
    return value[5:19].replace("T", " ") if value else "-"


def _took(seconds: float | None) -> str:
    return f"{seconds:.1f}s" if seconds is not None else "-"


def _state(state: str) -> str:
    return state.replace("_", " ")


def _overridden(entry: dict[str, Any]) -> str:
    """` (hotfix)` past the order, ` (override)` through freezes and windows."""
    return " (hotfix)" if entry["skip_order"] else " (override)" if entry["override_freeze"] else ""


def _kind_and_state(kind: str, state: str) -> str:
    """One column for both: `succeeded` (a promotion), `rollback failed`, `baseline` (adopted: always succeeded)."""
    if kind == "baseline":
        return kind
    return _state(state) if kind == "promotion" else f"{kind} {_state(state)}"


if __name__ == "__main__":
    main()
