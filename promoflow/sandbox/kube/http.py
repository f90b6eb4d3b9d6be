"""The HTTP face of a Cluster: routes, query parameters, bodies and answers as kube-apiserver gives them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from aiohttp import web

from promoflow.sandbox.kube import discovery, protobuf, tables
from promoflow.sandbox.kube.errors import ApiError, Expired, bad_request, details, method_not_allowed, no_route
from promoflow.sandbox.kube.patches import json_patch, merge_patch, strategic_merge
from promoflow.sandbox.kube.resources import ResourceType
from promoflow.sandbox.kube.selectors import Selector
from promoflow.sandbox.kube.store import Cluster, Propagation, WriteOptions, continue_token, list_key, read_continue
from promoflow.sandbox.kube_controllers import Event

logger = logging.getLogger(__name__)
Obj = dict[str, Any]
Subresource = Literal["status", "scale", "finalize"] | None
DEFAULT_WATCH_SECONDS = 1800.0
FAULT_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
SUBRESOURCES = ("status", "scale", "finalize")


def response(
    body: Obj, status: int = 200, headers: dict[str, str] | None = None, warnings: Iterable[str] = ()
) -> web.Response:
    """A JSON answer, newline-terminated as Go's encoder writes it."""
    answer = web.Response(
        body=json.dumps(body, separators=(",", ":")).encode() + b"\n",
        status=status,
        content_type="application/json",
        headers=headers,
    )
    for warning in warnings:
        answer.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return answer


def _fault(status: int, retry_after: int | None) -> ApiError:
    reason = FAULT_REASONS.get(status, "InternalError")
    if status == 429:
        message = "Too many requests, please try again later. (fault injected by the promoflow sandbox)"
    else:
        message = f"Internal error occurred: fault injected by the promoflow sandbox ({status} {reason})"
    found: Obj = {"causes": [{"message": message}]}
    headers = {}
    if retry_after is not None:
        found["retryAfterSeconds"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return ApiError(status, reason, message, found, headers)


def parse_body(raw: bytes) -> Any:
    if not raw.strip():
        raise bad_request("the request body is empty")
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise bad_request(f"the request body is neither JSON nor YAML: {error}") from None


def _unsupported_patch(rt: ResourceType) -> ApiError:
    accepted = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
    if not rt.custom:
        accepted.insert(2, "application/strategic-merge-patch+json")
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted),
    )


def _patched(rt: ResourceType, kind: str, body: bytes) -> Callable[[Obj], Obj]:
    """The function a PATCH applies to the current object (apply is handled by Cluster.apply)."""
    if kind == "strategic" and rt.custom:
        raise _unsupported_patch(rt)
    patch = parse_body(body)
    if kind == "json":
        return lambda obj: json_patch(obj, patch)
    if not isinstance(patch, dict):
        raise bad_request("a merge patch must be a JSON object")
    if kind == "merge":
        return lambda obj: merge_patch(obj, patch)
    return lambda obj: strategic_merge(obj, patch, rt.schema)


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: Subresource


class Api:
    """The HTTP face of a Cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.address = ""
        self._documents: dict[str, tuple[int, str, Obj]] = {}  # by group-version: (catalogue revision, hash, doc)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as error:
            return response(error.status(), error.code, error.headers)
        except Exception as error:  # a bug in the stand-in still answers as an API server would
            logger.exception("Kubernetes stand-in failed on %s %s", request.method, request.path_qs)
            return response(ApiError(500, "InternalError", f"Internal error occurred: {error}").status(), 500)

    # --- discovery and OpenAPI ---------------------------------------------------------------------------

    def _document(self, group_version: str) -> tuple[str, Obj]:
        revision = self.cluster.catalogue.revision
        cached = self._documents.get(group_version)
        if cached is None or cached[0] != revision:
            document = discovery.openapi_document(self.cluster.catalogue, group_version)
            cached = (revision, discovery.document_hash(document), document)
            self._documents[group_version] = cached
        return cached[1], cached[2]

    def _static(self, request: web.Request) -> web.StreamResponse | None:
        catalogue = self.cluster.catalogue
        path = request.path.rstrip("/") or "/"
        parts = path.strip("/").split("/")
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return response(discovery.VERSION_INFO)
        if path == "/api":
            address = [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}]
            return response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": address})
        if path == "/apis":
            return response(discovery.api_groups(catalogue))
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in catalogue.groups():
            return response({"kind": "APIGroup", "apiVersion": "v1", **discovery.api_group(catalogue, parts[1])})
        if path == "/openapi/v3":
            return response(discovery.openapi_root(catalogue, lambda gv: self._document(gv)[0]))
        if path.startswith("/openapi/v3/"):
            key = path[len("/openapi/v3/") :]
            for gv in catalogue.group_versions:
                if discovery.openapi_key(gv) == key:
                    return response(self._document(gv)[1])
            raise no_route()
        if path.startswith("/openapi/"):
            raise no_route()  # /openapi/v2 would be protobuf; kubectl falls back to v3
        return None

    # --- routing -----------------------------------------------------------------------------------------

    def _route(self, group_version: str, rest: list[str]) -> Route:
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in SUBRESOURCES:
            namespace, rest = rest[1], rest[2:]
        rt = self.cluster.catalogue.get(group_version, rest[0])
        if rt is None or len(rest) > 3 or (namespace is not None and not rt.namespaced):
            raise no_route()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) == 3 else None
        served = {"status": rt.status, "scale": rt.scale, "finalize": rt.kind == "Namespace" and not rt.custom}
        if sub is not None and not served.get(sub):
            raise no_route()
        if rt.namespaced and name is not None and namespace is None:
            raise no_route()
        return Route(rt, namespace, name, sub)  # type: ignore[arg-type]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        static = self._static(request)
        if static is not None:
            if request.method != "GET":
                raise method_not_allowed()
            return static
        parts = [p for p in request.path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group_version, rest = parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            raise no_route()
        if group_version not in self.cluster.catalogue.group_versions:
            raise no_route()
        if not rest:
            return response(discovery.resource_list(self.cluster.catalogue, group_version))
        route = self._route(group_version, rest)
        query = request.query
        verb = {
            ("GET", False): "watch" if query.get("watch") in ("true", "1") else "list",
            ("GET", True): "get",
            ("POST", False): "create",
            ("PUT", True): "update",
            ("PATCH", True): "patch",
            ("DELETE", True): "delete",
            ("DELETE", False): "deletecollection",
        }.get((request.method, route.name is not None))
        allowed = {"update"} if route.sub == "finalize" else {"get", "update", "patch"}
        if verb is None or (route.sub and verb not in allowed) or (not route.sub and verb not in route.rt.verbs):
            raise method_not_allowed()
        self.cluster.requests[verb] += 1
        fault = self.cluster.faults.take(verb, request.path)
        if fault:
            raise _fault(*fault)
        if verb == "watch":
            return await self._watch(request, route)
        if route.sub == "scale":
            answer = await self._scale(request, route, verb)
        else:
            answer = await getattr(self, "_" + verb)(request, route)
        if route.rt.deprecation:
            answer.headers.add("Warning", f"299 - {json.dumps(route.rt.deprecation)}")
        return answer

    # --- options -----------------------------------------------------------------------------------------

    def _options(self, request: web.Request, dry_run: Iterable[str] = ()) -> WriteOptions:
        query = request.query
        dry = [*query.getall("dryRun", []), *dry_run]
        for value in dry:
            if value != "All":
                raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
        validation = query.get("fieldValidation", "Warn")
        if validation not in ("Ignore", "Warn", "Strict"):
            raise bad_request(
                f'fieldValidation: Unsupported value: "{validation}": supported values: "Ignore", "Strict", "Warn"'
            )
        manager = query.get("fieldManager") or request.headers.get("User-Agent", "unknown").split("/")[0][:128]
        return WriteOptions(manager, bool(dry), validation)  # type: ignore[arg-type]

    def _selector(self, request: web.Request) -> Selector:
        return Selector.parse(request.query.get("labelSelector"), request.query.get("fieldSelector"))

    def _render(self, request: web.Request, rt: ResourceType, objects: list[Obj], rv: int | None) -> Obj | None:
        if "as=Table" not in request.headers.get("Accept", ""):
            return None
        return tables.table(rt, objects, request.query.get("includeObject", "Metadata"), rv, list(rt.printer_columns))

    async def _body(self, request: web.Request) -> Any:
        return self._decode(request, await request.read())

    def _decode(self, request: web.Request, raw: bytes) -> Any:
        if request.content_type == "application/vnd.kubernetes.protobuf":
            return self._protobuf(raw)
        if "cbor" in request.content_type:  # so that client-go falls back to JSON, as it does on a real server
            accepted = "application/json, application/yaml, application/vnd.kubernetes.protobuf"
            message = f"the body of the request was in an unknown format - accepted media types include: {accepted}"
            raise ApiError(415, "UnsupportedMediaType", message)
        return parse_body(raw)

    def _protobuf(self, raw: bytes) -> Any:
        api_version, kind, _ = protobuf.envelope(raw)
        rt = self.cluster.catalogue.of_kind(api_version, kind)
        definition = rt.schema.name if rt is not None and not rt.custom else None
        if kind == "DeleteOptions":
            definition = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
        if definition is None:
            raise ApiError(415, "UnsupportedMediaType", f"{api_version} {kind} cannot be sent as protobuf")
        return protobuf.decode(raw, definition)

    # --- verbs -------------------------------------------------------------------------------------------

    async def _list(self, request: web.Request, route: Route) -> web.StreamResponse:
        selector = self._selector(request)
        token = request.query.get("continue")
        start = ""
        at = None
        if token:
            at, start = read_continue(token)
            at = None if at == -1 else at
        try:
            keyed, rv = self.cluster.select(route.rt, route.namespace, selector, at)
        except Expired:
            raise ApiError(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a "
                "new list without the continue parameter.",
            ) from None
        items = [(list_key(route.rt, route.namespace, key), obj) for key, obj in keyed]
        if start:
            items = [(key, obj) for key, obj in items if key >= start]
        meta: Obj = {"resourceVersion": str(rv)}
        limit = int(request.query.get("limit") or 0)
        if 0 < limit < len(items):
            meta["continue"] = continue_token(rv, items[limit - 1][0] + "\x00")
            if selector.empty:
                meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        objects = [obj for _, obj in items]
        rendered = self._render(request, route.rt, objects, rv)
        if rendered is not None:
            rendered["metadata"] = meta
            return response(rendered)
        if not route.rt.custom:  # typed lists carry no per-item apiVersion/kind
            objects = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in objects]
        return response(
            {"kind": f"{route.rt.kind}List", "apiVersion": route.rt.api_version, "metadata": meta, "items": objects}
        )

    async def _get(self, request: web.Request, route: Route) -> web.StreamResponse:
        assert route.name is not None
        obj = self.cluster.get(route.rt, route.namespace, route.name)
        return response(self._render(request, route.rt, [obj], int(obj["metadata"]["resourceVersion"])) or obj)

    async def _create(self, request: web.Request, route: Route) -> web.StreamResponse:
        options = self._options(request)
        body = await self._body(request)
        if not route.rt.stored:
            return response(_review(route.rt, body), 201)
        obj = self.cluster.create(route.rt, route.namespace, body, options)
        return response(obj, 201, warnings=options.warnings)

    async def _update(self, request: web.Request, route: Route) -> web.StreamResponse:
        assert route.name is not None
        options = self._options(request)
        body = await self._body(request)
        if route.sub == "finalize":
            finalizers = ((body or {}).get("spec") or {}).get("finalizers") or []
            return response(self.cluster.finalize_namespace(route.rt, route.name, options, list(finalizers)))
        obj = self.cluster.replace(route.rt, route.namespace, route.name, body, options, route.sub)  # type: ignore[arg-type]
        return response(obj, warnings=options.warnings)

    async def _patch(self, request: web.Request, route: Route) -> web.StreamResponse:
        assert route.name is not None
        kind = discovery.PATCH_TYPES.get(request.content_type)
        if kind is None:
            raise _unsupported_patch(route.rt)
        options = self._options(request)
        raw = await request.read()
        if kind == "apply":
            if not request.query.get("fieldManager"):
                cause = {
                    "reason": "FieldValueRequired",
                    "message": "Required value: is required for apply patch",
                    "field": "fieldManager",
                }
                message = (
                    'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
                )
                raise ApiError(
                    422, "Invalid", message, {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [cause]}
                )
            force = request.query.get("force") == "true"
            code, obj = self.cluster.apply(
                route.rt,
                route.namespace,
                route.name,
                parse_body(raw),
                options,
                force,
                route.sub,  # type: ignore[arg-type]
            )
            return response(obj, code, warnings=options.warnings)
        change = _patched(route.rt, kind, raw)
        obj = self.cluster.patch(route.rt, route.namespace, route.name, change, options, route.sub)  # type: ignore[arg-type]
        return response(obj, warnings=options.warnings)

    def _delete_options(self, request: web.Request, raw: bytes) -> tuple[WriteOptions, Obj, Propagation | None]:
        body = self._decode(request, raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise bad_request("the request body must be DeleteOptions")
        query = request.query
        propagation = body.get("propagationPolicy") or query.get("propagationPolicy")
        if body.get("orphanDependents") is True or query.get("orphanDependents") == "true":
            propagation = propagation or "Orphan"
        if propagation not in (None, "Foreground", "Background", "Orphan"):
            supported = '"Foreground", "Background", "Orphan"'
            raise bad_request(f'propagationPolicy: Unsupported value: "{propagation}": supported values: {supported}')
        options = self._options(request, body.get("dryRun") or [])
        return options, dict(body.get("preconditions") or {}), propagation  # type: ignore[return-value]

    async def _delete(self, request: web.Request, route: Route) -> web.StreamResponse:
        assert route.name is not None
        options, preconditions, propagation = self._delete_options(request, await request.read())
        obj, gone = self.cluster.delete(route.rt, route.namespace, route.name, options, preconditions, propagation)
        if not gone or route.rt.returns_deleted:
            return response(obj)
        found = details(route.rt, route.name, uid=obj["metadata"]["uid"])
        return response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": found})

    async def _deletecollection(self, request: web.Request, route: Route) -> web.StreamResponse:
        options, _, propagation = self._delete_options(request, await request.read())
        keyed, _ = self.cluster.select(route.rt, route.namespace, self._selector(request))
        deleted = []
        for _, obj in keyed:
            with contextlib.suppress(ApiError):  # deleted meanwhile
                meta = obj["metadata"]
                deleted.append(
                    self.cluster.delete(route.rt, meta.get("namespace"), meta["name"], options, None, propagation)[0]
                )
        if not route.rt.custom:
            deleted = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in deleted]
        return response(
            {"kind": f"{route.rt.kind}List", "apiVersion": route.rt.api_version, "metadata": {}, "items": deleted}
        )

    async def _scale(self, request: web.Request, route: Route, verb: str) -> web.StreamResponse:
        assert route.name is not None
        rt = route.rt
        if verb != "get":
            options = self._options(request)
            raw = await request.read()
            current = _scale_of(rt, self.cluster.get(rt, route.namespace, route.name))
            if verb == "update":
                wanted = parse_body(raw)
            else:
                kind = discovery.PATCH_TYPES.get(request.content_type)
                if kind in (None, "apply"):
                    raise _unsupported_patch(rt)
                wanted = _patched(self.cluster.resource("horizontalpodautoscalers.autoscaling"), kind, raw)(current)
            replicas = ((wanted or {}).get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool):
                raise bad_request("the Scale's spec.replicas must be an integer")

            def scaled(obj: Obj) -> Obj:
                _set_path(obj, _replica_paths(rt)[0], replicas)
                return obj

            self.cluster.patch(rt, route.namespace, route.name, scaled, options)
        return response(_scale_of(rt, self.cluster.get(rt, route.namespace, route.name)))

    # --- watch -------------------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, route: Route) -> web.StreamResponse:
        query = request.query
        selector = self._selector(request)
        raw_rv = query.get("resourceVersion", "")
        try:
            since = None if raw_rv in ("", "0") or query.get("sendInitialEvents") == "true" else int(raw_rv)
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        except ValueError:
            raise bad_request(f"invalid resourceVersion or timeoutSeconds: {raw_rv!r}") from None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | str] = asyncio.Queue()
        answer = web.StreamResponse(headers={"Content-Type": "application/json"})
        answer.enable_chunked_encoding()
        rt = route.rt

        async def send(kind: str, obj: Obj) -> None:
            if "as=Table" in request.headers.get("Accept", "") and kind != "ERROR":
                rv = int(obj["metadata"].get("resourceVersion", 0))
                obj = tables.table(rt, [obj], query.get("includeObject", "Metadata"), rv, list(rt.printer_columns))
            await answer.write(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n")

        def deliver(item: Event | str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        try:
            watch_id, backlog, reached = self.cluster.open_watch(rt, since, deliver)
        except Expired as expired:
            await answer.prepare(request)
            await send("ERROR", ApiError(410, "Expired", str(expired)).status())
            await answer.write_eof()
            return answer
        try:
            await answer.prepare(request)
            for event in backlog:
                if visible := self._visible(route, selector, event):
                    await send(*visible)
            if query.get("sendInitialEvents") == "true" and query.get("allowWatchBookmarks") == "true":
                bookmark = {"resourceVersion": str(reached), "annotations": {"k8s.io/initial-events-end": "true"}}
                await send("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": bookmark})
            deadline = loop.time() + timeout
            while (remaining := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if item == "drop":
                    if request.transport is not None:
                        request.transport.abort()
                    return answer
                if item == "expire":
                    await send("ERROR", ApiError(410, "Expired", "too old resource version (compacted)").status())
                    break
                if item == "close":
                    break
                if isinstance(item, Event) and item.rv > reached and (visible := self._visible(route, selector, item)):
                    await send(*visible)
            await answer.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self.cluster.close_watch(watch_id)
        return answer

    def _visible(self, route: Route, selector: Selector, event: Event) -> tuple[str, Obj] | None:
        """The event as this watch sees it: objects entering or leaving the selection are ADDED/DELETED."""
        from promoflow.sandbox.kube.conversion import convert

        def selected(obj: Obj | None) -> bool:
            if obj is None:
                return False
            return (
                route.namespace is None or obj["metadata"].get("namespace") == route.namespace
            ) and selector.matches(obj)

        now_in = selected(event.obj)
        obj = convert(event.obj, route.rt)
        if event.type != "MODIFIED":
            return (event.type, obj) if now_in else None
        was_in = selected(event.old)
        if now_in:
            return ("MODIFIED" if was_in else "ADDED"), obj
        return ("DELETED", obj) if was_in else None


# --- /scale and the create-only kinds ------------------------------------------------------------------------


def _replica_paths(rt: ResourceType) -> tuple[str, str, str | None]:
    if rt.scale_paths:
        return rt.scale_paths
    return ".spec.replicas", ".status.replicas", None


def _path_get(obj: Obj, path: str | None) -> Any:
    node: Any = obj
    for key in (path or "").strip(".").split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _set_path(obj: Obj, path: str, value: Any) -> None:
    keys = path.strip(".").split(".")
    node = obj
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _scale_of(rt: ResourceType, obj: Obj) -> Obj:
    """An object's autoscaling/v1 Scale: its replicas and the selector of its pods."""
    spec_path, status_path, selector_path = _replica_paths(rt)
    meta = obj["metadata"]
    status: Obj = {"replicas": _path_get(obj, status_path) or 0}
    if rt.custom:
        selector = _path_get(obj, selector_path) if selector_path else None
        if selector:
            status["selector"] = selector
    else:
        selector = (obj.get("spec") or {}).get("selector") or {}
        labels = selector.get("matchLabels", selector) if isinstance(selector, dict) else {}
        status["selector"] = ",".join(f"{k}={v}" for k, v in labels.items() if isinstance(v, str))
    scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": _path_get(obj, spec_path) or 0},
        "status": status,
    }


def _review(rt: ResourceType, body: Any) -> Obj:
    """A create-only request answered as a stand-in that enforces no RBAC would: everything is allowed."""
    obj = dict(body) if isinstance(body, dict) else {}
    obj.setdefault("apiVersion", rt.api_version)
    obj.setdefault("kind", rt.kind)
    obj.setdefault("metadata", {})
    user = {"username": "promoflow-sandbox", "groups": ["system:masters", "system:authenticated"]}
    statuses: dict[str, Obj] = {
        "SelfSubjectAccessReview": {"allowed": True},
        "SubjectAccessReview": {"allowed": True},
        "LocalSubjectAccessReview": {"allowed": True},
        "SelfSubjectRulesReview": {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        },
        "SelfSubjectReview": {"userInfo": user},
        "TokenReview": {"authenticated": True, "user": user},
    }
    if rt.kind in statuses:
        obj["status"] = statuses[rt.kind]
    return obj
