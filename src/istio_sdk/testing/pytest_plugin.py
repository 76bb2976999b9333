"""The pytest plugin: a whole mesh per test (``istio_mesh``), config applied for one test
(``istio_config``), waiting for every proxy to ACK it, and proxyless gRPC workloads with the
mesh's certificates (``grpc_workload``, :mod:`istio_sdk.testing.grpc_workload`).

Installed as the ``pytest11`` entry point ``istio_sdk``, so ``pip install istio-sdk[test]``
makes the fixtures available everywhere; ``-p istio_sdk.testing.pytest_plugin`` loads it by hand.

``@pytest.mark.istio_mesh(config=PATH, components=[...], **options)`` configures the mesh of a
test (a folder or a YAML/JSON file; a relative path is taken from the test file's folder;
``options`` are :class:`~istio_sdk.Mesh` keywords). Overriding the ``istio_mesh_options``
fixture configures the mesh of every test in its scope; overriding ``istio_mesh`` replaces it.
The fixtures are asynchronous: they need pytest-asyncio (in the ``test`` extra). The plugin
imports nothing heavy until a test asks for a fixture.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from istio_sdk.config import Resource
    from istio_sdk.mesh import Mesh
    from istio_sdk.testing.grpc_workload import GrpcWorkloads

__all__ = ["DEFAULT_MESH_OPTIONS", "IstioConfig", "grpc_workload", "istio_config", "istio_mesh"]

DEFAULT_MESH_OPTIONS: Mapping[str, Any] = {
    "components": ("pilot", "citadel", "galley", "mixer", "injector"),
    "free_ports": True,
    "debounce_after": 0.01,
}
"""What a test's mesh runs unless its marker or ``istio_mesh_options`` says otherwise: every
component, on free ports, pushing 10 ms after a change."""

MARKER = "istio_mesh"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(config=PATH, components=[...], **options): the istio_mesh fixture's "
        "config folder or file, components and istio_sdk.Mesh keywords",
    )


@pytest.fixture
def istio_mesh_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The keywords the ``istio_mesh`` fixture builds its :class:`~istio_sdk.Mesh` with:
    :data:`DEFAULT_MESH_OPTIONS` updated by the test's ``istio_mesh`` marker (``config`` may
    be a folder or file; a relative path is taken from the test file's folder)."""
    options = dict(DEFAULT_MESH_OPTIONS)
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keywords only (config=..., components=...), "
                f"got {marker.args!r}"
            )
        options.update(marker.kwargs)
    config = options.get("config")
    if config is not None and not os.path.isabs(config):
        options["config"] = request.path.parent / config
    return options


def _build_mesh(options: Mapping[str, Any]) -> Mesh:
    from istio_sdk.config import ConfigStore, load_resources
    from istio_sdk.mesh import Mesh

    kwargs = dict(options)
    config = kwargs.pop("config", None)
    if config is None:
        return Mesh(**kwargs)
    path = pathlib.Path(config)
    if path.is_dir():
        kwargs.setdefault("strict", True)
        return Mesh.from_directory(path, **kwargs)
    if not path.exists():
        raise FileNotFoundError(f"@pytest.mark.{MARKER}: config {path} does not exist")
    return Mesh(ConfigStore(load_resources(path)), **kwargs)


class IstioConfig:
    """Config applied for one test: :meth:`apply` and :meth:`delete` change the mesh's store
    and wait until every connected proxy ACKed; at the end of the test every change is undone
    (replaced resources come back, new ones go) and the mesh converges again."""

    def __init__(self, mesh: Mesh, timeout: float = 10.0) -> None:
        self.mesh = mesh
        self.timeout = timeout
        self._before: dict[tuple[str, str, str], Resource | None] = {}

    def _remember(self, key: tuple[str, str, str]) -> None:
        if key not in self._before:
            kind, namespace, name = key
            self._before[key] = self.mesh.store.get(kind, name, namespace)

    async def apply(
        self, *sources: str | os.PathLike[str] | Resource | Iterable[Resource]
    ) -> list[Resource]:
        """Apply resources (YAML or JSON text, a file or folder path, :class:`Resource`
        values) and wait for convergence; returns what the store holds now.

        Invalid config raises :class:`~istio_sdk.config.ConfigError` naming the problem
        before anything is applied; a proxy's NACK raises
        :class:`~istio_sdk.MeshNotConvergedError` with its reason.
        """
        from istio_sdk.config import ConfigError, Resource, load_resources, validate

        resources: list[Resource] = []
        for source in sources:
            if isinstance(source, Resource):
                resources.append(source)
            elif isinstance(source, str | os.PathLike):
                resources.extend(load_resources(source))
            else:
                resources.extend(source)
        problems = [p for p in validate(resources) if p.is_error]  # warnings do not refuse
        if problems:
            raise ConfigError(problems[0])
        stored = []
        for resource in resources:
            self._remember(resource.key)
            stored.append(self.mesh.store.apply(resource))
        await self.mesh.converged(self.timeout)
        return stored

    async def delete(self, kind: str, name: str, namespace: str = "") -> None:
        """Delete one resource and wait for convergence (``NotFoundError`` when absent)."""
        current = self.mesh.store.get(kind, name, namespace)
        if current is not None:
            self._remember(current.key)
        self.mesh.store.delete(kind, name, namespace)
        await self.mesh.converged(self.timeout)

    async def restore(self) -> None:
        """Undo every change made through this object and wait for convergence."""
        before, self._before = self._before, {}
        for (kind, namespace, name), old in before.items():
            if old is not None:
                self.mesh.store.apply(old)
            elif self.mesh.store.get(kind, name, namespace) is not None:
                self.mesh.store.delete(kind, name, namespace)
        await self.mesh.converged(self.timeout)


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the test extra installs it

    @pytest.fixture
    def istio_mesh() -> Mesh:
        """A started mesh (needs pytest-asyncio)."""
        raise pytest.UsageError(
            "the istio_mesh fixture needs pytest-asyncio: pip install 'istio-sdk[test]'"
        )

    @pytest.fixture
    def grpc_workload() -> GrpcWorkloads:
        """Proxyless gRPC workloads (needs pytest-asyncio)."""
        raise pytest.UsageError(
            "the grpc_workload fixture needs pytest-asyncio: pip install 'istio-sdk[test]'"
        )

    @pytest.fixture
    def istio_config() -> IstioConfig:
        """Config for one test (needs pytest-asyncio)."""
        raise pytest.UsageError(
            "the istio_config fixture needs pytest-asyncio: pip install 'istio-sdk[test]'"
        )

else:

    @pytest_asyncio.fixture
    async def istio_mesh(  # type: ignore[misc]
        istio_mesh_options: dict[str, Any],
    ) -> AsyncIterator[Mesh]:
        """A started :class:`~istio_sdk.Mesh` (see ``istio_mesh_options``), converged on its
        config; stopped after the test, with every client it handed out."""
        async with _build_mesh(istio_mesh_options) as mesh:
            await mesh.converged()
            yield mesh

    @pytest_asyncio.fixture
    async def istio_config(istio_mesh: Mesh) -> AsyncIterator[IstioConfig]:  # type: ignore[misc]
        """Apply and delete config on ``istio_mesh`` for one test, waiting for convergence;
        undone after the test."""
        config = IstioConfig(istio_mesh)
        yield config
        await config.restore()

    @pytest_asyncio.fixture
    async def grpc_workload(  # type: ignore[misc]
        istio_mesh: Mesh, tmp_path: pathlib.Path
    ) -> AsyncIterator[GrpcWorkloads]:
        """Start proxyless gRPC servers and clients on ``istio_mesh`` (see
        :class:`~istio_sdk.testing.grpc_workload.GrpcWorkloads`; skipped without grpcio);
        every process ends with the test."""
        pytest.importorskip("grpc")
        from istio_sdk.testing.grpc_workload import GrpcWorkloads

        workloads = GrpcWorkloads(istio_mesh, tmp_path / "grpc-workloads")
        try:
            yield workloads
        finally:
            await workloads.close()
