"""Imports the generated code only needs inside a function load when it runs
(``codegen/lazy_imports.py``): importing Envoy types does not import ``dateutil``."""

from __future__ import annotations

import subprocess
import sys


def test_dateutil_loads_when_a_timestamp_is_read_from_json() -> None:
    code = (
        "import sys\n"
        "from istio_sdk.api.envoy.config.cluster.v3 import Cluster\n"
        "from istio_sdk.api.google.protobuf import Timestamp\n"
        "print('dateutil' in sys.modules)\n"
        "stamp = Timestamp.from_dict('2026-12-03T10:00:00.5Z')\n"
        "print(stamp.seconds, stamp.nanos, 'dateutil' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "1796292000", "500000000", "True"]
