"""Reaching a Kubernetes API server: credentials through ``lightkube``, REST paths of a kind.

:func:`kube_config` reads a kubeconfig file (its current context or a named one) or the
in-cluster service account (``/var/run/secrets/kubernetes.io/serviceaccount``: ``token``,
``ca.crt``, ``namespace``, and ``KUBERNETES_SERVICE_HOST``/``PORT``) into lightkube's
``SingleConfig``; :func:`http_client` builds the ``httpx.AsyncClient`` lightkube would use for
it (server URL, CA, client certificate, bearer token re-read from its file, exec plugins).
Failures are :class:`KubeConfigError` naming the file or the missing variable.
"""

from __future__ import annotations

import os
import pathlib
import urllib.parse

import httpx

from istio_sdk.config._kinds import KindInfo

__all__ = ["SERVICE_ACCOUNT", "KubeConfigError", "http_client", "kind_path", "kube_config"]

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where Kubernetes mounts a Pod's service account token, CA and namespace."""


class KubeConfigError(ValueError):
    """A kubeconfig file or in-cluster credentials that cannot be used (the message says why)."""


def kube_config(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    in_cluster: bool = False,
    context: str | None = None,
    service_account: str | os.PathLike[str] | None = None,
) -> object:
    """lightkube's ``SingleConfig`` for a kubeconfig file or, with ``in_cluster``, the Pod's
    service account. Raises :class:`KubeConfigError`."""
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.core.exceptions import ConfigError

    try:
        if in_cluster:
            for variable in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
                if not os.environ.get(variable):
                    raise KubeConfigError(f"in-cluster credentials need {variable} to be set")
            loaded = KubeConfig.from_service_account(
                service_account=SERVICE_ACCOUNT if service_account is None else service_account
            )
        else:
            if kubeconfig is None:
                raise KubeConfigError("no kubeconfig file given")
            path = pathlib.Path(kubeconfig)
            if not path.is_file():
                raise KubeConfigError(f"kubeconfig {path}: no such file")
            loaded = KubeConfig.from_file(path)
        single = loaded.get(context_name=context)
    except KubeConfigError:
        raise
    except (ConfigError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        where = "in-cluster credentials" if in_cluster else f"kubeconfig {kubeconfig}"
        raise KubeConfigError(f"{where}: {type(exc).__name__}: {exc}") from exc
    if single is None:
        raise KubeConfigError(f"kubeconfig {kubeconfig}: no current context")
    return single


def http_client(config: object, *, timeout: float = 10.0) -> httpx.AsyncClient:
    """The httpx client lightkube builds for ``config`` (a ``SingleConfig``)."""
    from lightkube.config.client_adapter import AsyncClient, ConnectionParams
    from lightkube.core.exceptions import ConfigError

    try:
        client: httpx.AsyncClient = AsyncClient(
            config,  # type: ignore[arg-type]
            ConnectionParams(timeout=httpx.Timeout(timeout), trust_env=False),
        )
    except (ConfigError, OSError, ValueError) as exc:
        raise KubeConfigError(f"cannot use the cluster's credentials: {exc}") from exc
    return client


def kind_path(info: KindInfo, namespace: str | None = None, name: str = "") -> str:
    """The REST path of a kind's collection (in ``namespace`` when given) or of one object."""
    version = info.storage_version
    base = f"/apis/{info.group}/{version}" if info.group else f"/api/{version}"
    if namespace is not None and info.namespaced:
        base += f"/namespaces/{urllib.parse.quote(namespace, safe='')}"
    base += f"/{info.plural}"
    if name:
        base += f"/{urllib.parse.quote(name, safe='')}"
    return base
