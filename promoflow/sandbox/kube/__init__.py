"""A Kubernetes API stand-in: a real HTTP server that the official clients (`kubernetes`, `kubectl`) use unchanged.

The demo and `promoflow sandbox kube` run on it, where no control plane can. It serves every built-in kind of
the Kubernetes version whose schemas promoflow bundles (and the custom resources of the CRDs it is given),
keeps objects in memory and behaves as kube-apiserver does where a promoter can tell: decoding, defaulting
and validation, resourceVersion and conflicts, generation, status subresources, server-side apply with
managedFields, finalizers and deletion, garbage collection, Terminating namespaces, paged lists, watches,
dry runs, discovery, OpenAPI and Status errors. tests/test_sandbox_kube.py holds it to a real kube-apiserver.
Everything it serves is simulated: the server calls itself v1.37.0-promoflow-sandbox, no workload runs, and
the controllers only write what theirs would.

    with KubeStandIn() as kube:
        kube.write_kubeconfig(tmp / "kubeconfig")
        kube.cluster.rollouts.behave("*:broken*", "never_ready")
        kube.cluster.argocd.report("web-prod", revision="abc123")

Modules: `schema` (the bundled schemas), `resources` (what is served), `codec` / `defaults` / `validation` /
`strategy` (a write's steps), `fields` / `patches` (managed fields, apply and patches), `store` (the
cluster), `lifecycle` and `controllers` (what controllers do), `discovery` and `http` (the API), `server`.
"""

from promoflow.sandbox.kube.errors import ApiError
from promoflow.sandbox.kube.resources import GIT_VERSION, ResourceType
from promoflow.sandbox.kube.server import KubeStandIn, serve
from promoflow.sandbox.kube.store import Cluster, WriteOptions

__all__ = ["GIT_VERSION", "ApiError", "Cluster", "KubeStandIn", "ResourceType", "WriteOptions", "serve"]
