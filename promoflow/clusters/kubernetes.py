"""The `kubernetes` cluster target: server-side apply of rendered objects, pruning what promoflow applied before.

Every object promoflow applies carries three labels (managed-by, app, environment); pruning deletes only
live objects carrying all three for this app and environment, so nothing promoflow did not apply is ever
deleted. Field manager `promoflow` owns exactly the fields of the manifests: fields set by others (an
autoscaler's replicas, a `kubectl edit`) conflict instead of being silently overwritten, unless forced.

An object whose live state already holds every field of its manifest, last applied from that very
manifest (a fingerprint annotation), is not sent again: re-applying an unchanged app costs one list per
kind instead of one request per object. Anything else (drift, a field dropped from the manifest, an
object not yet labelled) is applied, so the cluster always ends as server-side apply would leave it.

The `kubernetes` package is imported lazily: it costs about 0.4 s, and most commands never talk to a cluster.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import difflib
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import yaml

from promoflow.clusters.render import Manifest, apply_order, validate
from promoflow.errors import TerminalError, TransientError
from promoflow.redact import MASK, redact

MANAGED_BY = "app.kubernetes.io/managed-by"
APP_LABEL = "promoflow.dev/app"
ENVIRONMENT_LABEL = "promoflow.dev/environment"
APPLIED_ANNOTATION = "promoflow.dev/applied"  # fingerprint of the manifest last applied: unchanged ones are skipped
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Server-set fields that say nothing about what a promotion changes; left out of diffs.
VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")
_CONFLICT_OWNER = re.compile(r'conflict with "([^"]+)"')
# The authorizer's refusal: `User "u" cannot patch resource "deployments" in API group "apps" in the namespace "n"`
_RBAC_REFUSAL = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)" in API group "(?P<group>[^"]*)"'
    r'(?: in the namespace "(?P<namespace>[^"]+)")?'
)
CRD_ESTABLISHED_TIMEOUT_SECONDS = 60.0
# Where Kubernetes mounts a pod's ServiceAccount credentials (token, ca.crt, namespace)
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
NO_CREDENTIALS = (
    "no cluster credentials: name a kubeconfig on the environment (`cluster: {kubeconfig: FILE, context: NAME}`), "
    "set $KUBECONFIG or create ~/.kube/config, or run promoflow in a Kubernetes pod with a ServiceAccount"
)
T = TypeVar("T")


@dataclass(frozen=True)
class ObjectRef:
    """One Kubernetes object: what promoflow records as applied, and what it prunes and checks by."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: Manifest) -> ObjectRef:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace") or None, meta["name"])

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def key(self) -> Key:
        """Identity regardless of API version: apps/v1 and apps/v1beta2 Deployments are the same object."""
        return self.group, self.kind, self.namespace, self.name

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def as_dict(self) -> dict[str, str | None]:
        return {"apiVersion": self.api_version, "kind": self.kind, "namespace": self.namespace, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectRef:
        """The inverse of `as_dict` (what the records keep)."""
        return cls(str(data["apiVersion"]), str(data["kind"]), data.get("namespace"), str(data["name"]))


@dataclass(frozen=True)
class ApplyResult:
    applied: list[ObjectRef]  # everything in the manifests, in apply order: the inventory to pass as `previous`
    changed: list[ObjectRef]  # created or modified (their resourceVersion moved)
    pruned: list[ObjectRef]  # deleted (or, on a dry run, that would be)
    requests: int  # API requests made (discovery excluded)
    terminating: list[ObjectRef] = field(default_factory=list)  # pruned, gone once their finalizers have run
    # Deployments this apply changed while they still reported an earlier rollout's progress deadline: the
    # lastUpdateTime of that condition, which is not this rollout's failure (see health.workload_state)
    stale_deadlines: dict[ObjectRef, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectDiff:
    ref: ObjectRef
    action: Literal["create", "update", "prune"]
    diff: str  # unified diff of the YAML, live -> desired; Secret values shown as ***


class Throttled(TransientError):
    """429 Too Many Requests: retry, no sooner than `retry_after` seconds if the server said so."""


Key = tuple[str, str, str | None, str]  # ObjectRef.key
Inventory = dict[Key, Manifest]  # live objects labelled as one app's in one environment, by identity


class KubernetesTarget:
    """One cluster, reached through a kubeconfig context, that promoflow applies environments to; with no kubeconfig
    named or found, the cluster promoflow runs in, as its pod's ServiceAccount (mounted at `service_account`)."""

    def __init__(
        self,
        kubeconfig: str | None = None,
        context: str | None = None,
        field_manager: str = "promoflow",
        service_account: Path = SERVICE_ACCOUNT,
    ):
        self.kubeconfig = kubeconfig
        self.context = context
        self.field_manager = field_manager
        self.service_account = service_account
        self._client: Any = None
        self._api: Any = None
        self._default_namespace = "default"
        self._requests = 0
        # Each kind's resource, once found: the client searches its discovery on every lookup (50 objects, 50 times).
        self._resources: dict[tuple[str, str], Any] = {}
        self._cache_dir = tempfile.mkdtemp(prefix="promoflow-discovery-")  # never another cluster's discovery
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._cache_dir, True)

    # --- lifecycle -------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = self._client = None
            self._resources.clear()
        self._finalizer()

    def __enter__(self) -> KubernetesTarget:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def _file(self) -> str:
        from kubernetes.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION

        return self.kubeconfig or KUBE_CONFIG_DEFAULT_LOCATION

    @property
    def in_cluster(self) -> bool:
        """No kubeconfig named, none in $KUBECONFIG or ~/.kube/config: the pod's ServiceAccount is the way in."""
        named = self.kubeconfig or self.context or os.environ.get("KUBECONFIG")
        return not named and not Path("~/.kube/config").expanduser().exists()

    @property
    def where(self) -> str:
        if self.in_cluster:
            return "the pod's ServiceAccount"
        return f"context {self.context!r}" if self.context else f"kubeconfig {self.kubeconfig or '(default)'}"

    def _in_cluster_client(self, settings: Any) -> Any:
        """A client as the pod's ServiceAccount: API server from $KUBERNETES_SERVICE_HOST/PORT, token (re-read as
        the kubelet rotates it), CA and namespace from the mounted ServiceAccount directory."""
        from kubernetes.client import ApiClient
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.incluster_config import SERVICE_HOST_ENV_NAME, InClusterConfigLoader

        if not os.environ.get(SERVICE_HOST_ENV_NAME):
            raise TerminalError(NO_CREDENTIALS)
        account = self.service_account
        try:
            InClusterConfigLoader(str(account / "token"), str(account / "ca.crt")).load_and_set(settings)
            namespace = (account / "namespace").read_text().strip()
        except (ConfigException, OSError) as error:
            raise TerminalError(
                f"cannot use the pod's ServiceAccount ({account}): {redact(str(error)).rstrip('.')}: mount its token "
                "(automountServiceAccountToken) or name a kubeconfig on the environment"
            ) from None
        self._default_namespace = namespace or "default"
        return ApiClient(configuration=settings)

    def _kubeconfig_client(self, settings: Any) -> Any:
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException

        try:
            contexts, active = config.list_kube_config_contexts(config_file=self.kubeconfig)
            chosen = next((c for c in contexts if c["name"] == self.context), None) if self.context else active
            if chosen is None:
                raise ConfigException(f"context {self.context!r} not found")
            self._default_namespace = chosen.get("context", {}).get("namespace") or "default"
            return config.new_client_from_config(
                config_file=self.kubeconfig, context=self.context, client_configuration=settings
            )
        except (ConfigException, OSError) as error:
            raise TerminalError(f"cannot load the kubeconfig ({self.where}): {redact(str(error))}") from None
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            raise TerminalError(
                f"cannot load the kubeconfig ({self.where}): {self._file}{at}: not valid YAML ({error.problem})"
            ) from None
        except (yaml.YAMLError, TypeError, ValueError, AttributeError, KeyError) as error:  # not its shape
            raise TerminalError(
                f"cannot load the kubeconfig ({self.where}): {self._file} is not a kubeconfig "
                f"({type(error).__name__}: {redact(str(error))})"
            ) from None

    def _dynamic(self) -> Any:
        if self._client is None:
            from kubernetes import dynamic
            from kubernetes.client import Configuration

            settings = Configuration()
            settings.retries = 0  # no hidden sleeps or retries: errors reach the caller, which retries with backoff
            api = self._in_cluster_client(settings) if self.in_cluster else self._kubeconfig_client(settings)
            cache_file = str(Path(self._cache_dir) / "discovery.json")
            connect = functools.partial(dynamic.DynamicClient, api, cache_file=cache_file)
            try:
                self._client = self._call("connect", connect, count=False)
            except TransientError:
                api.close()
                raise
            self._api = api
        return self._client

    def merge_patch(self, ref: ObjectRef, body: Manifest) -> None:
        """One JSON merge patch (what `argocd app sync` and `flux reconcile` send to their custom resources)."""
        resource = self._resource(ref.api_version, ref.kind, str(ref))
        self._call(
            str(ref),
            lambda: resource.patch(
                body=body,
                name=ref.name,
                namespace=ref.namespace,
                content_type="application/merge-patch+json",
                field_manager=self.field_manager,
            ),
        )

    # --- reading -----------------------------------------------------------------------------------------

    def get(self, ref: ObjectRef) -> Manifest | None:
        """The live object, or None if it does not exist."""
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self._resource(ref.api_version, ref.kind, str(ref))
        try:
            live = self._call(
                str(ref), lambda: resource.get(name=ref.name, namespace=ref.namespace), reraise=NotFoundError
            )
        except NotFoundError:
            return None
        return dict(live.to_dict())

    # --- writing -----------------------------------------------------------------------------------------

    def apply(
        self,
        app: str,
        environment: str,
        objects: Sequence[Manifest],
        *,
        previous: Sequence[ObjectRef] = (),
        force: bool = False,
        dry_run: bool = False,
    ) -> ApplyResult:
        """Server-side apply `objects`, then delete this app's objects (in this environment) that are gone from them.

        `previous` is the inventory of the last apply (ApplyResult.applied): its kinds are searched for
        objects to prune as well as the kinds of `objects`, so dropping the last object of a kind prunes it.
        """
        self._requests = 0
        desired = self._prepare(app, environment, objects)
        live = self._inventory(app, environment, desired, previous)
        applied, changed = [], []
        stale_deadlines: dict[ObjectRef, str] = {}
        for obj in desired:
            ref = ObjectRef.of(obj)
            applied.append(ref)
            before = live.get(ref.key)
            if before is not None and in_effect(obj, before):
                continue  # applying it again would change nothing
            if dry_run and self._awaits_crd(obj, desired):
                changed.append(ref)  # its kind is not served before its CRD is applied: nothing to ask the server
                continue
            result = self._apply_one(obj, force=force, dry_run=dry_run)
            if before is None or before["metadata"]["resourceVersion"] != result["metadata"]["resourceVersion"]:
                changed.append(ref)
                if ref.kind == "Deployment" and (condition := progress_deadline_exceeded(result)):
                    stale_deadlines[ref] = str(condition.get("lastUpdateTime") or "")
            if ref.kind == "CustomResourceDefinition" and not dry_run:
                self._await_established(ref)  # its custom resources come next
        pruned, terminating = self._prune(live, {ref.key for ref in applied}, dry_run=dry_run)
        return ApplyResult(applied, changed, pruned, self._requests, terminating, stale_deadlines)

    def diff(
        self, app: str, environment: str, objects: Sequence[Manifest], *, previous: Sequence[ObjectRef] = ()
    ) -> list[ObjectDiff]:
        """What `apply` would change: a server dry-run apply of each object against the live one, and the prunes."""
        desired = self._prepare(app, environment, objects)
        live = self._inventory(app, environment, desired, previous)
        diffs = []
        created: set[str] = set()  # namespaces the apply would create (they come first in apply order)
        for obj in desired:
            ref = ObjectRef.of(obj)
            if ref.namespace in created:  # no server dry-runs into a namespace that does not exist yet
                diffs.append(ObjectDiff(ref, "create", _unified(ref, None, obj)))
                continue
            if self._awaits_crd(obj, desired):
                diffs.append(ObjectDiff(ref, "create", _unified(ref, None, obj)))  # no server can check it yet
                continue
            current = live.get(ref.key) or self.get(ref)  # an object not yet labelled is adopted
            if current is None and ref.kind == "Namespace":
                created.add(ref.name)
            after = self._apply_one(obj, force=False, dry_run=True)
            for _ in range(5):  # written meanwhile (a controller's status): compare what the dry run started from
                if current is None or _version(current) == _version(after):
                    break
                current = self.get(ref)
                after = self._apply_one(obj, force=False, dry_run=True)
            text = _unified(ref, current, after)
            if text:
                diffs.append(ObjectDiff(ref, "update" if current else "create", text))
        wanted = {ObjectRef.of(obj).key for obj in desired}
        for key, obj in live.items():
            if key not in wanted:
                ref = ObjectRef.of(obj)
                diffs.append(ObjectDiff(ref, "prune", _unified(ref, obj, None)))
        return diffs

    # --- internals ---------------------------------------------------------------------------------------

    def _prepare(self, app: str, environment: str, objects: Sequence[Manifest]) -> list[Manifest]:
        """Labelled copies of `objects`, namespaced as the cluster scopes them, in apply order."""
        for name, value in (("app", app), ("environment", environment)):
            if len(value) > 63 or not value or not LABEL_VALUE.match(value):
                raise TerminalError(f"{name} name {value!r} cannot be a Kubernetes label value: use [A-Za-z0-9._-]")
        prepared = []
        defined = _defined_kinds(objects)
        for index, original in enumerate(objects, start=1):
            validate(original, f"object {index}")
            obj = copy.deepcopy(original)
            meta = obj["metadata"]
            meta["labels"] = {
                **(meta.get("labels") or {}),
                MANAGED_BY: "promoflow",
                APP_LABEL: app,
                ENVIRONMENT_LABEL: environment,
            }
            if self._namespaced(obj, defined):
                meta["namespace"] = meta.get("namespace") or self._default_namespace
            else:
                meta.pop("namespace", None)  # as kubectl does: a namespace on a cluster-scoped object means nothing
            meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_ANNOTATION: _fingerprint(obj)}
            prepared.append(obj)
        return sorted(prepared, key=apply_order)

    def _namespaced(self, obj: Manifest, defined: dict[tuple[str, str], bool]) -> bool:
        """Whether the cluster scopes `obj` by namespace; for a kind a CRD among the objects defines, as it says."""
        ref = ObjectRef.of(obj)
        if (ref.group, ref.kind) in defined and not self._serves(ref.api_version, ref.kind):
            return defined[ref.group, ref.kind]
        return bool(self._resource(ref.api_version, ref.kind, str(ref)).namespaced)

    def _serves(self, api_version: str, kind: str) -> bool:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        client = self._dynamic()
        try:
            self._call(kind, lambda: client.resources.get(api_version=api_version, kind=kind), count=False)
        except ResourceNotFoundError:
            return False
        return True

    def _awaits_crd(self, obj: Manifest, desired: Sequence[Manifest]) -> bool:
        """Whether `obj` is of a kind that only a CRD among `desired` will make the cluster serve."""
        ref = ObjectRef.of(obj)
        return (ref.group, ref.kind) in _defined_kinds(desired) and not self._serves(ref.api_version, ref.kind)

    def _await_established(self, ref: ObjectRef) -> None:
        """Wait until the API server serves the kind CRD `ref` defines (its custom resources are applied next)."""
        deadline = time.monotonic() + CRD_ESTABLISHED_TIMEOUT_SECONDS
        while True:
            crd = self.get(ref) or {}
            conditions = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions") or []}
            names = conditions.get("NamesAccepted") or {}
            if names.get("status") == "False":
                raise TerminalError(f"{ref}: the API server did not accept its names: {names.get('message')}")
            served = [v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")]
            group, kind = crd.get("spec", {}).get("group"), crd.get("spec", {}).get("names", {}).get("kind")
            established = (conditions.get("Established") or {}).get("status") == "True"
            if established and all(self._serves(f"{group}/{version}", kind) for version in served):
                return
            if time.monotonic() >= deadline:
                raise TransientError(f"{ref}: not established within {CRD_ESTABLISHED_TIMEOUT_SECONDS:g} s")
            time.sleep(0.1)

    def _inventory(
        self, app: str, environment: str, desired: Sequence[Manifest], previous: Sequence[ObjectRef]
    ) -> Inventory:
        """This app's live objects in this environment, of the kinds and in the namespaces it applies or applied.

        Namespaced kinds are listed namespace by namespace, never cluster-wide: an identity whose Roles
        cover only the app's namespaces can promote it.
        """
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        refs = [ObjectRef.of(obj) for obj in desired] + list(previous)
        kinds = dict.fromkeys((ref.api_version, ref.kind) for ref in refs)
        namespaces = sorted({ref.namespace for ref in refs if ref.namespace})
        selector = f"{MANAGED_BY}=promoflow,{APP_LABEL}={app},{ENVIRONMENT_LABEL}={environment}"
        inventory: Inventory = {}
        for api_version, kind in kinds:
            try:
                resource = self._dynamic().resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                continue  # a kind applied before that the cluster no longer serves: nothing of it can be left
            for namespace in namespaces if resource.namespaced else [None]:
                listed = self._call(
                    f"list {kind}", functools.partial(resource.get, namespace=namespace, label_selector=selector)
                )
                for item in listed.to_dict().get("items") or []:
                    item.setdefault("apiVersion", api_version)
                    item.setdefault("kind", kind)
                    inventory[ObjectRef.of(item).key] = item
        return inventory

    def _apply_one(self, obj: Manifest, *, force: bool, dry_run: bool) -> Manifest:
        ref = ObjectRef.of(obj)
        resource = self._resource(ref.api_version, ref.kind, str(ref))
        result = self._call(
            str(ref),
            lambda: resource.server_side_apply(
                body=obj,
                namespace=ref.namespace,
                field_manager=self.field_manager,
                force_conflicts=True if force else None,
                dry_run="All" if dry_run else None,
            ),
        )
        return dict(result.to_dict())

    def _prune(self, live: Inventory, wanted: set[Key], *, dry_run: bool) -> tuple[list[ObjectRef], list[ObjectRef]]:
        """Delete what is no longer wanted; returns (pruned, of which still terminating: finalizers pending)."""
        from kubernetes.dynamic.exceptions import NotFoundError

        doomed = sorted((ObjectRef.of(obj) for key, obj in live.items() if key not in wanted), key=_prune_order)
        terminating = []
        for ref in doomed:
            if live[ref.key]["metadata"].get("deletionTimestamp"):
                terminating.append(ref)  # deleted before and still finalizing: asking again changes nothing
                continue
            resource = self._resource(ref.api_version, ref.kind, str(ref))
            delete = functools.partial(
                resource.delete,
                name=ref.name,
                namespace=ref.namespace,
                propagation_policy="Background",
                dry_run="All" if dry_run else None,
            )
            with contextlib.suppress(NotFoundError):  # already gone: what pruning wanted
                answer = self._call(f"prune {ref}", delete, reraise=NotFoundError).to_dict()
                if not dry_run and (answer.get("metadata") or {}).get("deletionTimestamp"):
                    terminating.append(ref)  # the object itself came back: it waits for its finalizers
        return doomed, terminating

    def _resource(self, api_version: str, kind: str, what: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        if (api_version, kind) in self._resources:
            return self._resources[api_version, kind]
        client = self._dynamic()
        try:
            found = self._call(what, lambda: client.resources.get(api_version=api_version, kind=kind), count=False)
        except ResourceNotFoundError:
            raise TerminalError(
                f"{what}: the cluster ({self.where}) does not serve kind {kind} in {api_version}: "
                "fix the apiVersion or install the CRD first"
            ) from None
        self._resources[api_version, kind] = found
        return found

    def _call(self, what: str, request: Callable[[], T], *, count: bool = True, reraise: type | None = None) -> T:
        """Run one API request, turning its failure into a TerminalError or TransientError that says what to do."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import ResourceNotFoundError
        from urllib3.exceptions import HTTPError

        if count:
            self._requests += 1
        try:
            return request()
        except ResourceNotFoundError:
            raise
        except ApiException as error:
            if reraise is not None and isinstance(error, reraise):
                raise
            raise _api_error(what, error, self.where) from None
        except (HTTPError, OSError) as error:
            raise TransientError(f"{what}: cannot reach the cluster ({self.where}): {redact(str(error))}") from None


def _api_error(what: str, error: Any, where: str) -> TerminalError | TransientError:
    status = int(error.status or 0)
    try:
        body = json.loads(error.body) if error.body else {}
    except (TypeError, ValueError):
        body = {}
    message = redact(str(body.get("message") or error.reason or f"HTTP {status}"))
    causes = (body.get("details") or {}).get("causes") or []
    if status == 409 and any(c.get("reason") == "FieldManagerConflict" for c in causes):
        fields = []
        for cause in causes:
            owner = _CONFLICT_OWNER.search(str(cause.get("message", "")))
            fields.append(f"{cause.get('field')} owned by {owner.group(1) if owner else cause.get('message')}")
        return TerminalError(f"{what}: apply conflicts: {', '.join(fields)}: re-run with force or fix the manifest")
    if status == 429:
        retry_after = (error.headers or {}).get("Retry-After")
        seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
        later = f", retry after {retry_after} s" if seconds is not None else ""
        return Throttled(f"{what}: the API server is throttling requests{later}: {message}", seconds)
    if status == 409 or status >= 500 or status in (0, 408):
        return TransientError(f"{what}: the API server answered {status}: {message}")
    refusal = _RBAC_REFUSAL.search(message) if status == 403 else None
    if refusal:
        resource = ".".join(filter(None, (refusal["resource"], refusal["group"])))
        scope = f" in namespace {refusal['namespace']}" if refusal["namespace"] else " cluster-wide"
        return TerminalError(
            f"{what}: {refusal['user']} may not {refusal['verb']} {resource}{scope} ({where}): "
            f"grant it that verb in a Role or ClusterRole bound to it, or use a context that has it"
        )
    if status == 401:
        return TerminalError(f"{what}: not authenticated (401) in {where}: {message}: check the credentials")
    if causes and status == 422 and all(c.get("field") for c in causes):  # an admission policy's name none
        details = "; ".join(f"{c.get('field')}: {c.get('message')}" for c in causes)
        return TerminalError(f"{what}: invalid: {redact(details)}: fix the manifest")
    return TerminalError(f"{what}: the API server refused it ({status}): {message}")


def _defined_kinds(objects: Iterable[Manifest]) -> dict[tuple[str, str], bool]:
    """(group, kind) -> namespaced, for each kind a CustomResourceDefinition among `objects` defines."""
    defined = {}
    for obj in objects:
        spec = obj.get("spec") if obj.get("kind") == "CustomResourceDefinition" else None
        if isinstance(spec, dict) and isinstance(spec.get("names"), dict):
            defined[str(spec.get("group")), str(spec["names"].get("kind"))] = spec.get("scope") != "Cluster"
    return defined


def progress_deadline_exceeded(deployment: Manifest) -> dict[str, Any] | None:
    """The Deployment's Progressing condition if it says the controller gave up (ProgressDeadlineExceeded)."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return dict(condition)
    return None


def in_effect(desired: Manifest, live: Manifest) -> bool:
    """Whether `live` was last applied from `desired` (same fingerprint) and still holds each of its values.

    The fingerprint rules out fields dropped from the manifest since (applying would remove them); the
    comparison rules out drift (someone changed a value promoflow set). Server-added fields do not count.
    """
    annotations = live.get("metadata", {}).get("annotations") or {}
    wanted = desired["metadata"]["annotations"].get(APPLIED_ANNOTATION)
    return annotations.get(APPLIED_ANNOTATION) == wanted and _holds(live, _as_stored(desired))


def _fingerprint(obj: Manifest) -> str:
    """Of the manifest as promoflow applies it, its own annotation left out."""
    body = copy.deepcopy(obj)
    (body["metadata"].get("annotations") or {}).pop(APPLIED_ANNOTATION, None)
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _as_stored(obj: Manifest) -> Manifest:
    """A Secret's write-only `stringData` is stored base64-encoded in `data`: compare it there."""
    if obj.get("kind") != "Secret" or not obj.get("stringData"):
        return obj
    encoded = {k: base64.b64encode(str(v).encode()).decode() for k, v in obj["stringData"].items()}
    return {**{k: v for k, v in obj.items() if k != "stringData"}, "data": {**(obj.get("data") or {}), **encoded}}


def _holds(live: Any, desired: Any) -> bool:
    """Every value of `desired` is in `live`; maps may have more keys (defaults), lists must match item by item.

    An empty map or list, or a null, is held by an absent field: the API server stores none of them.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            _holds(live[k], v) if k in live else v in (None, {}, []) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(_holds, live, desired))
    return type(live) is type(desired) and live == desired


def _prune_order(ref: ObjectRef) -> tuple[int, str, str, str]:
    """Reverse of apply order: workloads before the namespaces and CRDs they live in."""
    kind_order = {"Namespace": 2, "CustomResourceDefinition": 1}
    return kind_order.get(ref.kind, 0), ref.kind, ref.namespace or "", ref.name


def _version(obj: Manifest | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion")


def _unified(ref: ObjectRef, before: Manifest | None, after: Manifest | None) -> str:
    old, new = _comparable(before), _comparable(after)
    if ref.kind == "Secret":
        old, new = _mask_secret(old, new)
    lines = difflib.unified_diff(
        _yaml_lines(old), _yaml_lines(new), fromfile=f"live/{ref}", tofile=f"desired/{ref}", lineterm=""
    )
    return "\n".join(lines)


def _comparable(obj: Manifest | None) -> Manifest | None:
    if obj is None:
        return None
    obj = copy.deepcopy(obj)
    metadata = obj.get("metadata", {})
    for key in VOLATILE_METADATA:
        metadata.pop(key, None)
    (metadata.get("annotations") or {}).pop(APPLIED_ANNOTATION, None)  # bookkeeping, not a change to show
    if metadata.get("annotations") == {}:
        del metadata["annotations"]
    return obj


def _mask_secret(old: Manifest | None, new: Manifest | None) -> tuple[Manifest | None, Manifest | None]:
    """Secret values as `***`, marked (before)/(after) where they differ, so a diff shows that but not what changed."""
    for section in ("data", "stringData"):
        before = (old or {}).get(section) or {}
        after = (new or {}).get(section) or {}
        if old is not None and section in old:
            old[section] = {k: MASK if after.get(k) == v else f"{MASK} (before)" for k, v in before.items()}
        if new is not None and section in new:
            new[section] = {k: MASK if before.get(k) == v else f"{MASK} (after)" for k, v in after.items()}
    return old, new


def _yaml_lines(obj: Manifest | None) -> list[str]:
    return [] if obj is None else yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines()
