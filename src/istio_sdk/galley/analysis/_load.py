"""Reading files for an analysis: every resource with its file and lines, and what failed to parse.

Unlike :func:`istio_sdk.load_resources`, which stops at the first problem, a file that does not
parse is reported and the others are still analyzed, as ``istioctl analyze`` does.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable

import attrs

from istio_sdk.config import ConfigError, Problem, Resource
from istio_sdk.config._io import config_files, decode_text, load_leniently, read_file
from istio_sdk.galley.analysis._snapshot import Location

__all__ = ["LoadResult", "load_for_analysis", "load_text"]


@attrs.frozen
class LoadResult:
    """Resources with their locations, the files read, and the problems that stopped a file."""

    resources: tuple[tuple[Resource, Location], ...]
    files: tuple[str, ...]
    problems: tuple[Problem, ...]
    skipped: tuple[str, ...] = ()
    """Files given by name that are not .yaml, .yml or .json (istioctl skips them)."""


def load_text(text: str, name: str) -> tuple[list[tuple[Resource, Location]], list[Problem]]:
    """The resources of one file's text; a document that does not load is a problem."""
    out: list[tuple[Resource, Location]] = []
    problems: list[Problem] = []
    for loaded in load_leniently(text, name):
        if isinstance(loaded, Problem):
            problems.append(loaded)
            continue
        document, prefix = loaded.document, loaded.prefix
        line = document.lines.get(prefix) if prefix else document.line
        out.append((loaded.resource, Location(name, line, document.lines, prefix)))
    return out, problems


def load_for_analysis(
    paths: Iterable[str | pathlib.Path], *, stdin_text: str | None = None
) -> LoadResult:
    """Read files and folders (recursively; ``-`` is ``stdin_text``) for :func:`analyze`.

    Raises FileNotFoundError for a path that does not exist.
    """
    resources: list[tuple[Resource, Location]] = []
    problems: list[Problem] = []
    files: list[str] = []
    skipped: list[str] = []
    for given in paths:
        if str(given) == "-":
            loaded, found = load_text(stdin_text or "", "stdin")
            files.append("stdin")
            resources.extend(loaded)
            problems.extend(found)
            continue
        path = pathlib.Path(given)
        if not path.exists():
            raise FileNotFoundError(f"{given}: no such file or folder")
        if path.is_dir():
            targets = config_files(path)
        elif path.suffix in (".yaml", ".yml", ".json"):
            targets = [path]
        else:
            skipped.append(str(path))
            continue
        for target in targets:
            name = str(target)
            files.append(name)
            try:
                text = decode_text(read_file(target), name)
            except ConfigError as exc:
                problems.append(exc.problem)
                continue
            except OSError as exc:
                problems.append(Problem(message=f"cannot read: {exc.strerror or exc}", source=name))
                continue
            loaded, found = load_text(text, name)
            resources.extend(loaded)
            problems.extend(found)
    return LoadResult(tuple(resources), tuple(files), tuple(problems), tuple(skipped))
