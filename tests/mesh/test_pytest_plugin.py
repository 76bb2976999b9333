"""The pytest plugin run as a user runs it: a test file of theirs, through pytester."""

from __future__ import annotations

import pathlib
import tomllib

import pytest
from support.plugin_run import PLUGIN, run_with_plugin

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).resolve().parents[2]

SERVICE_ENTRY = """\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.1.0.1, labels: {version: v1}}
  - {address: 10.1.0.2, labels: {version: v2}}
"""


def test_the_entry_point_names_the_plugin_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"istio_sdk": PLUGIN}


def test_a_marked_test_gets_a_started_mesh_with_its_config(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"mesh/reviews": SERVICE_ENTRY})
    pytester.makepyfile(
        """
        import pytest
        from istio_sdk import xds
        from istio_sdk.pilot.client import sidecar_node

        CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"

        @pytest.mark.asyncio
        @pytest.mark.istio_mesh(config="mesh", components=["pilot", "citadel"])
        async def test_reviews(istio_mesh):
            assert set(istio_mesh.addresses) == {"pilot", "citadel"}
            async with istio_mesh.pilot_client(sidecar_node("10.0.0.5", "a", "default")) as c:
                c.subscribe(xds.CLUSTER)
                await c.wait_for(xds.CLUSTER, [CLUSTER])
            bundle = await istio_mesh.issue_identity(("default", "reviews"))
            assert bundle.identity.service_account == "reviews"

        @pytest.mark.asyncio
        async def test_unmarked_runs_every_component(istio_mesh):
            assert {"pilot", "citadel", "galley", "mixer", "injector"} <= set(istio_mesh.addresses)
        """
    )
    result = run_with_plugin(pytester)
    result.assert_outcomes(passed=2)


def test_istio_config_is_applied_converged_and_undone(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"mesh/reviews": SERVICE_ENTRY})
    pytester.makepyfile(
        """
        import pytest
        import pytest_asyncio
        from istio_sdk import xds
        from istio_sdk.pilot.client import sidecar_node

        VS = '''
        apiVersion: networking.istio.io/v1beta1
        kind: VirtualService
        metadata: {name: reviews, namespace: default}
        spec:
          hosts: [reviews]
          http:
          - match: [{uri: {prefix: /canary}}]
            route: [{destination: {host: reviews}}]
        '''

        def prefixes(routes):
            return {r.match.prefix for rc in routes.values() for vh in rc.virtual_hosts
                    for r in vh.routes}

        pytestmark = [pytest.mark.asyncio, pytest.mark.istio_mesh(config="mesh")]

        @pytest_asyncio.fixture
        async def proxy(istio_mesh):
            client = istio_mesh.pilot_client(sidecar_node("10.0.0.5", "a", "default"))
            await client.start()
            client.subscribe(xds.LISTENER)
            client.subscribe(xds.ROUTE, ["9080"])
            await client.wait_for(xds.ROUTE, ["9080"])
            return client

        async def test_apply_waits_for_the_proxy(istio_mesh, istio_config, proxy):
            await istio_config.apply(VS)
            assert "/canary" in prefixes(proxy.resources(xds.ROUTE))
            await istio_config.restore()
            assert "/canary" not in prefixes(proxy.resources(xds.ROUTE))
            assert istio_mesh.store.get("VirtualService", "reviews", "default") is None

        @pytest.fixture
        def gone_after(istio_mesh, tmp_path):
            yield
            # torn down after istio_config (set up before it)
            assert istio_mesh.store.get("VirtualService", "reviews", "default") is None
            assert istio_mesh.unsynced() == []
            print("CHECKED-AFTER-TEARDOWN")

        async def test_config_of_a_test_is_gone_after_it(gone_after, istio_config):
            await istio_config.apply(VS)

        async def test_invalid_config_is_refused_with_its_problem(istio_config):
            from istio_sdk.config import ConfigError
            bad = VS.replace("prefix: /canary", "prefix: 7")
            with pytest.raises(ConfigError, match="prefix"):
                await istio_config.apply(bad)
        """
    )
    result = run_with_plugin(pytester, "-s")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*CHECKED-AFTER-TEARDOWN*"])


def test_a_positional_marker_argument_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.istio_mesh("mesh")
        async def test_positional(istio_mesh):
            pass
        """
    )
    result = run_with_plugin(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*takes keywords only (config=..., components=...)*"])


def test_overriding_istio_mesh_options_configures_the_mesh(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def istio_mesh_options():
            return {"components": ["pilot"], "free_ports": True}
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_overridden(istio_mesh):
            assert set(istio_mesh.addresses) == {"pilot"}
        """
    )
    run_with_plugin(pytester).assert_outcomes(passed=1)
