"""The fast codec of a generated package loads when one of its classes is first encoded or
parsed, not when the package is imported (``istio_sdk.codec.install_lazily``)."""

from __future__ import annotations

import subprocess
import sys


def run_fresh(code: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.split()


PRELUDE = (
    "import sys\n"
    "from istio_sdk.api.envoy.config.cluster.v3 import Cluster\n"
    "loaded = lambda: 'istio_sdk.api.envoy.config.cluster.v3._codec' in sys.modules\n"
    "print(loaded())\n"
)


def test_first_encode_loads_the_codec() -> None:
    code = PRELUDE + (
        "from istio_sdk.codec import fast_codec_installed\n"
        "print(bytes(Cluster(name='a')).hex(), loaded())\n"
        "print(Cluster(name='b').SerializeToString().hex(), fast_codec_installed(Cluster))\n"
    )
    assert run_fresh(code) == ["False", "0a0161", "True", "0a0162", "True"]


def test_first_parse_loads_the_codec_and_nested_packages_follow() -> None:
    code = PRELUDE + (
        "from istio_sdk.api.envoy.config.core.v3 import Locality\n"
        "cluster = Cluster.FromString(bytes.fromhex('0a0161'))\n"
        "print(cluster.name, loaded(), Locality.parse(bytes.fromhex('0a0178')).region)\n"
        "print('istio_sdk.api.envoy.config.core.v3._codec' in sys.modules)\n"
    )
    assert run_fresh(code) == ["False", "a", "True", "x", "True"]


def test_subclasses_and_the_reference_codec_before_first_use() -> None:
    code = (
        "import sys\n"
        "from istio_sdk.api.envoy.config.core.v3 import Locality\n"
        "from istio_sdk.codec import reference_codec\n"
        "loaded = lambda: 'istio_sdk.api.envoy.config.core.v3._codec' in sys.modules\n"
        "class Mine(Locality):\n"
        "    pass\n"
        "with reference_codec():\n"
        "    print(bytes(Locality(region='a')).hex(), loaded())\n"
        "mine = Mine.parse(bytes(Mine(zone='c')))\n"
        "print(type(mine).__name__, mine.zone, loaded())\n"
    )
    assert run_fresh(code) == ["0a0161", "False", "Mine", "c", "True"]
