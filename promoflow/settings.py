"""Where promoflow keeps its state: resolved from the environment and the config file's location."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_ENV = "PROMOFLOW_CONFIG"
HOME_ENV = "PROMOFLOW_HOME"
DATABASE_ENV = "PROMOFLOW_DATABASE_URL"


# The flows' default `config`: $PROMOFLOW_CONFIG, else ./promotions.yaml, where the flow runs (a worker's own).
FROM_ENVIRONMENT = ""


def config_path(explicit: str | Path | None = None, resolve: bool = True) -> Path:
    """The promotions.yaml to use: the argument, $PROMOFLOW_CONFIG, or ./promotions.yaml."""
    path = Path(explicit or os.environ.get(CONFIG_ENV) or "promotions.yaml")
    return path.resolve() if resolve else path


def state_dir(config: Path) -> Path:
    """$PROMOFLOW_HOME, or `.promoflow/` beside promotions.yaml (like `.git/`)."""
    explicit = os.environ.get(HOME_ENV)
    return Path(explicit).resolve() if explicit else config.parent / ".promoflow"


def database_url(state: Path) -> str:
    """$PROMOFLOW_DATABASE_URL (PostgreSQL for teams), else SQLite in the state directory."""
    return os.environ.get(DATABASE_ENV) or f"sqlite:///{state / 'promoflow.db'}"


def current_user() -> str:
    """Who is acting: $PROMOFLOW_USER, else the login name."""
    import getpass

    return os.environ.get("PROMOFLOW_USER") or getpass.getuser()
