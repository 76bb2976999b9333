"""pydantic, which betterproto2 imports when installed, loads only when something uses it.

Each check runs in a fresh interpreter: what is imported first decides what is deferred.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("pydantic")


def run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_importing_the_api_does_not_run_pydantic() -> None:
    code = (
        "import sys\n"
        "import istio_sdk.api.envoy.config.cluster.v3\n"
        "print('pydantic.main' in sys.modules, 'pydantic_core._pydantic_core' in sys.modules)"
    )
    assert run(code) == ["False", "False"]


def test_pydantic_still_works_for_betterproto2_and_for_its_own_users() -> None:
    code = (
        "from istio_sdk.api.envoy.config.cluster.v3 import Cluster\n"
        "import pydantic, pydantic_core, pydantic.dataclasses, betterproto2\n"
        "class Model(pydantic.BaseModel):\n"
        "    port: int\n"
        "print(Model(port='80').port, Cluster(name='a').to_dict()['name'])\n"
        "print(betterproto2.pydantic is pydantic, pydantic.BaseModel is pydantic.main.BaseModel)\n"
        "print(isinstance(pydantic_core.SchemaValidator, type), Cluster()._is_pydantic())"
    )
    assert run(code) == ["80", "a", "True", "True", "True", "False"]


def test_pydantic_imported_before_istio_sdk_is_left_alone() -> None:
    code = (
        "import pydantic\n"
        "import istio_sdk.api.envoy.config.cluster.v3, betterproto2, sys\n"
        "print(sys.modules['pydantic'] is pydantic, type(pydantic).__name__)"
    )
    assert run(code) == ["True", "module"]
