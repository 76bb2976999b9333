"""Running a user's test file with istio-sdk's pytest plugin, through pytester."""

from __future__ import annotations

import importlib.metadata

import pytest

PLUGIN = "istio_sdk.testing.pytest_plugin"


def plugin_args() -> list[str]:
    """pytest arguments that load the plugin: installed, its entry point does; from a
    checkout whose installed metadata predates it, ``-p`` by module name."""
    loaded = any(ep.value == PLUGIN for ep in importlib.metadata.entry_points(group="pytest11"))
    return ["-p", "asyncio"] + ([] if loaded else ["-p", PLUGIN])


def run_with_plugin(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytester's files in a child pytest with the plugin loaded."""
    return pytester.runpytest_subprocess(*plugin_args(), "-q", "-p", "no:cacheprovider", *args)
