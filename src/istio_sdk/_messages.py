"""Finding generated message classes by proto name (shared by protojson, xds and testing).

Generated modules register their classes in one message pool as they are imported, and
``istio_sdk.api`` is imported lazily, so a class the pool does not know yet may still exist.
The module path mirrors the proto package (``envoy.config.cluster.v3.Cluster`` lives in
``istio_sdk.api.envoy.config.cluster.v3``): importing the package of a full name is cheap;
importing every generated module is the slow last resort.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

import betterproto2

TYPE_URL_PREFIX = "type.googleapis.com/"
API_PACKAGE = "istio_sdk.api"


def message_pool() -> betterproto2.MessagePool:
    """The message pool every generated class registers in."""
    from istio_sdk.api.message_pool import default_message_pool

    pool: betterproto2.MessagePool = default_message_pool
    return pool


def full_name_of(cls: type[betterproto2.Message]) -> str | None:
    """The full proto name of a generated class (``envoy.config.cluster.v3.Cluster``); None
    for a class the pool does not know."""
    url = message_pool().type_to_url.get(cls)
    return None if url is None else url.removeprefix(TYPE_URL_PREFIX)


@functools.cache
def import_all_api_modules() -> None:
    """Import every module below ``istio_sdk.api`` (once), registering every class."""
    package = importlib.import_module(API_PACKAGE)
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{API_PACKAGE}."):
        importlib.import_module(info.name)


def find_message_class(
    full_name: str, *, import_all: bool = True
) -> type[betterproto2.Message] | None:
    """The generated class of ``full_name`` (e.g. ``envoy.config.cluster.v3.Cluster``).

    Looks in the pool, then imports the modules the name's package prefixes map to (longest
    first); with ``import_all``, finally imports all of ``istio_sdk.api``. None when no
    generated class has that name.
    """
    url = TYPE_URL_PREFIX + full_name
    pool = message_pool()
    cls = pool.url_to_type.get(url)
    if cls is not None:
        return cls
    parts = full_name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        try:
            importlib.import_module(".".join([API_PACKAGE, *parts[:end]]))
        except ImportError:
            continue
        cls = pool.url_to_type.get(url)
        if cls is not None:
            return cls
    if not import_all:
        return None
    import_all_api_modules()
    return pool.url_to_type.get(url)
