"""The top-level package: lazy exports, __all__, and a cheap import."""

from __future__ import annotations

import subprocess
import sys

import istio_sdk


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert set(istio_sdk.__all__) == set(istio_sdk._EXPORTS) | {"__version__"}


def test_every_export_resolves() -> None:
    for name in istio_sdk._EXPORTS:
        assert getattr(istio_sdk, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        istio_sdk.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_does_not_load_the_generated_api() -> None:
    code = (
        "import sys, istio_sdk; "
        "loaded = [m for m in sys.modules if m.startswith('istio_sdk.api')]; "
        "print(len(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
