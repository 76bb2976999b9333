"""The top-level package: curated exports, __all__, doc-used names and a cheap import."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pathlib
import pkgutil
import re
import subprocess
import sys

import pytest

import istio_sdk

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

# Public-looking exception classes that never reach a caller, and why.
INTERNAL_ERRORS = {
    # raised and caught inside CRD-rule validation; callers get ValidationError
    "istio_sdk.config._cel.CelError",
    "istio_sdk.config._cel.CelSyntaxError",
    "istio_sdk.config._go.RegexError",
    # a signing worker failing inside CitadelServer; callers get a gRPC status
    "istio_sdk.citadel._signing_pool.SigningWorkerError",
}
# Packages that are not component APIs: generated code, the command line, test helpers.
NOT_SCANNED = ("istio_sdk.api", "istio_sdk.cli", "istio_sdk.testing")


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert len(istio_sdk.__all__) == len(set(istio_sdk.__all__))
    assert set(istio_sdk.__all__) == set(istio_sdk._EXPORTS) | {"__version__"}


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from istio_sdk import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(istio_sdk.__all__)


@pytest.mark.parametrize("name", sorted(istio_sdk._EXPORTS))
def test_every_export_is_its_component_packages_object(name: str) -> None:
    package = importlib.import_module(istio_sdk._EXPORTS[name])
    exported = getattr(istio_sdk, name)
    assert name in package.__all__, f"{package.__name__}.__all__ lacks {name}"
    assert getattr(package, name) is exported
    # Defined under that package, under its own name (not an alias of something else).
    assert exported.__name__ == name
    assert exported.__module__ == package.__name__ or exported.__module__.startswith(
        package.__name__ + "."
    ), f"{name} is defined in {exported.__module__}, outside {package.__name__}"


@pytest.mark.parametrize("package", ["istio_sdk.pilot", "istio_sdk.citadel", "istio_sdk.config"])
def test_component_packages_export_what_they_list(package: str) -> None:
    module = importlib.import_module(package)
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(module.__all__)


def _public_modules() -> list[str]:
    names = ["istio_sdk"]
    for info in pkgutil.walk_packages(istio_sdk.__path__, "istio_sdk."):
        if not info.name.startswith(NOT_SCANNED):
            names.append(info.name)
    return names


def test_every_error_type_is_importable_from_istio_sdk() -> None:
    missing: list[str] = []
    seen = 0
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if not (isinstance(value, type) and issubclass(value, BaseException)):
                continue
            if value.__module__ != module_name or name.startswith("_"):
                continue
            seen += 1
            where = f"{module_name}.{name}"
            if where in INTERNAL_ERRORS:
                continue
            if getattr(istio_sdk, name, None) is not value:
                missing.append(where)
    assert seen > 30  # the scan really found the components' errors
    assert missing == [], f"export these from istio_sdk (and their package): {missing}"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def _is_submodule(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:
        return False


def _doc_names() -> list[tuple[str, str, str]]:
    """(doc file, module, name) for every ``istio_sdk...`` name the docs use."""
    found: list[tuple[str, str, str]] = []
    for doc in DOCS:
        text = doc.read_text()
        for first in re.findall(r"\bistio_sdk\.([A-Za-z_]\w*)", text):
            found.append((doc.name, "istio_sdk", first))
        for block in _python_blocks(text):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("istio_sdk"):
                    assert node.module is not None
                    found += [(doc.name, node.module, alias.name) for alias in node.names]
    return found


def test_every_name_the_docs_use_exists_where_they_say() -> None:
    names = _doc_names()
    assert ("pilot.md", "istio_sdk.pilot", "StaticGenerator") in names  # the scan works
    problems: list[str] = []
    for doc, module_name, name in sorted(set(names)):
        if _is_submodule(f"{module_name}.{name}"):
            continue
        module = importlib.import_module(module_name)
        if not hasattr(module, name):
            problems.append(f"{doc}: {module_name}.{name} does not exist")
        # From a package (the curated API), a name must be listed in its __all__.
        elif hasattr(module, "__path__") and name not in getattr(module, "__all__", ()):
            problems.append(f"{doc}: {name} is not in {module_name}.__all__")
    assert problems == []


def test_the_names_the_docs_teach_are_top_level_too() -> None:
    for name in ("StaticGenerator", "sidecar_node", "grpc_node", "PushContext", "Mesh"):
        assert name in istio_sdk.__all__, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        istio_sdk.no_such_name  # noqa: B018


def test_import_does_not_load_the_generated_api() -> None:
    code = (
        "import sys, istio_sdk; "
        "loaded = [m for m in sys.modules if m.startswith('istio_sdk.api')]; "
        "print(len(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
