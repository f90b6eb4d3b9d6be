"""A loaded project: promotions.yaml, its state directory, the records and the git workspace."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from promoflow import settings
from promoflow.config import App, Environment, Image, Promotions
from promoflow.config_loader import load
from promoflow.errors import TerminalError
from promoflow.gitops.workspace import Credentials, Workspace, split_credentials
from promoflow.records import Database
from promoflow.redact import register
from promoflow.sources import OciLayoutSource, RegistrySource, Source
from promoflow.sources.git import GitSource

if TYPE_CHECKING:
    from promoflow.clusters.kubernetes import KubernetesTarget
    from promoflow.forges.github import GitHubForge


@dataclass
class Project:
    config_path: Path
    config: Promotions

    @classmethod
    def load(cls, config: str | Path | None = None) -> Project:
        path = settings.config_path(config)
        return cls(path, load(path))

    @property
    def base_dir(self) -> Path:
        return self.config_path.parent

    @cached_property
    def state_dir(self) -> Path:
        return settings.state_dir(self.config_path)

    @cached_property
    def db(self) -> Database:
        return Database(settings.database_url(self.state_dir))

    @cached_property
    def workspace(self) -> Workspace:
        """The environments repository. Credentials in its URL win; else, with `forge: github` over HTTP(S), the
        GitHub token."""
        url, in_url = split_credentials(self.repository_url)
        auth = None
        if in_url is None and self.config.repository.forge == "github" and url.startswith(("https://", "http://")):
            # GitHub takes the token as the password of `x-access-token`, as actions/checkout sends it.
            credentials = base64.b64encode(f"x-access-token:{self.github_token}".encode()).decode()
            register(credentials)
            auth = Credentials(f"Authorization: Basic {credentials}", "the token (`github.token` in promotions.yaml)")
        return Workspace(self.repository_url, self.state_dir, auth)

    @cached_property
    def github_token(self) -> str:
        from promoflow import secrets

        github = self.config.repository.github
        if github is None:
            raise TerminalError("This project's forge is local: it has no GitHub token.")
        return secrets.resolve(github.token, "GitHub token")

    @cached_property
    def github(self) -> GitHubForge:
        """The pull-request side of `forge: github`."""
        from promoflow.forges.github import GitHubForge

        github = self.config.repository.github
        if github is None:
            raise TerminalError("This project's forge is local: promotion requests are not pull requests.")
        return GitHubForge(github.repository, github.api_url, self.github_token)

    @property
    def repository_url(self) -> str:
        return self._url(self.config.repository.url)

    def _url(self, url: str) -> str:
        """A git URL as is; a path relative to promotions.yaml made absolute."""
        if "://" in url or url.startswith("git@"):
            return url
        return str((self.base_dir / url).resolve())

    def cluster(self, environment: Environment) -> KubernetesTarget:
        """A client of the environment's cluster (target `kubernetes`)."""
        from promoflow.clusters.kubernetes import KubernetesTarget

        cluster = environment.cluster
        kubeconfig = str((self.base_dir / cluster.kubeconfig).resolve()) if cluster.kubeconfig else None
        return KubernetesTarget(kubeconfig, cluster.context)

    def git_source(self, app: App) -> GitSource | None:
        if app.git is None:
            return None
        return GitSource(app.name, app.git, self._url(app.git.url), self.state_dir)

    def source(self, image: Image) -> Source:
        config = image.source
        if config.oci_layout is not None:
            return OciLayoutSource(image.name, (self.base_dir / config.oci_layout).resolve())
        assert config.registry and config.repository  # the config model guarantees both
        return RegistrySource(image.name, config.registry, config.repository, config.platform, config.credentials)
