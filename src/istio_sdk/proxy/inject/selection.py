"""Which Pods reach an injector: the namespace and object selectors of Istio's webhooks.

The kube-apiserver sends a Pod to istiod's injector only when one of the chart's
``MutatingWebhookConfiguration`` entries selects it (``istio-discovery/templates/
mutatingwebhook.yaml``). For revision ``R`` (``default`` when empty):

- the namespace has ``istio.io/rev=R`` and no ``istio-injection`` label, and the Pod does not
  say ``sidecar.istio.io/inject=false``;
- the namespace has neither label, and the Pod has ``istio.io/rev=R`` and does not say
  ``sidecar.istio.io/inject=false``;

and for the default revision also:

- the namespace has ``istio-injection=enabled`` and the Pod does not say
  ``sidecar.istio.io/inject=false``;
- the namespace has neither label, and the Pod has ``sidecar.istio.io/inject=true`` and no
  ``istio.io/rev`` label;
- with ``enableNamespacesByDefault``, a namespace with neither label (and not a system
  namespace) and a Pod with neither label.

:func:`webhook_selects` answers that question for a Pod's and its namespace's labels.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["webhook_selects"]

INJECTION = "istio-injection"
REVISION = "istio.io/rev"
INJECT = "sidecar.istio.io/inject"
_SYSTEM = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})


def webhook_selects(
    namespace_labels: Mapping[str, str],
    pod_labels: Mapping[str, str],
    *,
    revision: str = "",
    namespaces_by_default: bool = False,
    namespace: str = "",
) -> bool:
    """Whether the injector of ``revision`` receives a Pod with ``pod_labels`` created in a
    namespace labelled ``namespace_labels``."""
    rev = revision or "default"
    not_disabled = pod_labels.get(INJECT) != "false"
    unlabelled = INJECTION not in namespace_labels and REVISION not in namespace_labels
    if namespace_labels.get(REVISION) == rev and INJECTION not in namespace_labels and not_disabled:
        return True
    if unlabelled and pod_labels.get(REVISION) == rev and not_disabled:
        return True
    if revision:
        return False
    if namespace_labels.get(INJECTION) == "enabled" and not_disabled:
        return True
    if unlabelled and pod_labels.get(INJECT) == "true" and REVISION not in pod_labels:
        return True
    return (
        namespaces_by_default
        and unlabelled
        and namespace_labels.get("kubernetes.io/metadata.name", namespace) not in _SYSTEM
        and INJECT not in pod_labels
        and REVISION not in pod_labels
    )
