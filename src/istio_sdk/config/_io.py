"""``load_resources`` and ``dump_resources``: Istio YAML/JSON in and out."""

from __future__ import annotations

import io
import json
import os
import pathlib
from collections.abc import Iterable, Iterator
from typing import IO, Literal, TypeAlias

import attrs
import yaml

from istio_sdk.config._errors import ConfigError, DocumentError, Problem, YamlSyntaxError
from istio_sdk.config._limits import DEFAULT_LIMITS, LoadLimits
from istio_sdk.config._resource import Resource, resource_from_json
from istio_sdk.config._yaml import Document, JsonValue, join_index, limit_error, parse_documents

Source: TypeAlias = str | bytes | os.PathLike[str] | IO[str] | IO[bytes]
"""What :func:`load_resources` reads: text, bytes, a path, or an open file."""

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 bytes -> text; anything else is a :class:`YamlSyntaxError` naming the byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(
            Problem(
                message=f"not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start}",
                source=name,
            )
        ) from exc


def _too_large(name: str, limits: LoadLimits) -> Exception:
    return limit_error(
        limits, "max_bytes", f"source is larger than {limits.max_bytes} bytes", source=name
    )


def read_file(path: pathlib.Path, limits: LoadLimits = DEFAULT_LIMITS) -> bytes:
    """A file's bytes; a file over ``limits.max_bytes`` is refused before it is read."""
    name = str(path)
    with path.open("rb") as file:
        if os.fstat(file.fileno()).st_size > limits.max_bytes:
            raise _too_large(name, limits)
        data = file.read(limits.max_bytes + 1)  # the file may grow while it is read
    if len(data) > limits.max_bytes:
        raise _too_large(name, limits)
    return data


def read_source(source: Source, limits: LoadLimits = DEFAULT_LIMITS) -> list[tuple[str, str]]:
    """Resolve a source into ``(name, text)`` pairs (one per file; a folder gives many).

    A ``str`` is a path when it has no newline and names an existing file or folder or ends
    in ``.yaml``, ``.yml`` or ``.json``; otherwise it is the text itself. Sizes are checked
    against ``limits.max_bytes`` before anything large is read.
    """
    if isinstance(source, bytes):
        if len(source) > limits.max_bytes:
            raise _too_large("<bytes>", limits)
        return [("<bytes>", decode_text(source, "<bytes>"))]
    if isinstance(source, str):
        if "\n" not in source and (os.path.exists(source) or source.endswith(CONFIG_SUFFIXES)):
            return read_source(pathlib.Path(source), limits)
        return [("<string>", source)]
    if isinstance(source, os.PathLike):
        path = pathlib.Path(source)
        paths = config_files(path) if path.is_dir() else [path]
        return [(str(p), decode_text(read_file(p, limits), str(p))) for p in paths]
    if isinstance(source, io.IOBase) or hasattr(source, "read"):
        name = str(getattr(source, "name", "<stream>"))
        data = source.read(limits.max_bytes + 1)
        if len(data) > limits.max_bytes:
            raise _too_large(name, limits)
        return [(name, decode_text(data, name) if isinstance(data, bytes) else data)]
    raise TypeError(f"cannot load resources from {type(source).__name__}")


def config_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """Every ``*.yaml``, ``*.yml`` and ``*.json`` file below ``folder``, sorted.

    Hidden files and folders (a leading ``.``, such as a ConfigMap volume's ``..data``) are
    skipped and not entered; symlinks to files are followed, symlinks to folders are not.
    """
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = pathlib.Path(top, name)
            if not name.startswith(".") and path.suffix in CONFIG_SUFFIXES and path.is_file():
                found.append(path)
    return sorted(found)


def iter_objects(document: Document, source: str) -> Iterator[tuple[str, JsonValue]]:
    """The objects of a document with their path prefix: itself, or a ``List``'s ``items``."""
    value = document.value
    if value is None:
        return
    if isinstance(value, dict) and _is_list(value):
        items = value.get("items")
        if items is None:
            return
        if not isinstance(items, list):
            raise DocumentError(
                Problem(
                    message="a List's items must be a list",
                    source=source,
                    index=document.index,
                    kind=str(value.get("kind")),
                    path="items",
                    line=document.line_of("items"),
                )
            )
        for i, item in enumerate(items):
            yield join_index("items", i), item
        return
    yield "", value


def _is_list(value: dict[str, JsonValue]) -> bool:
    kind = value.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and "items" in value


def resources_from_text(
    text: str, source: str, limits: LoadLimits = DEFAULT_LIMITS
) -> list[Resource]:
    """Parse one file's text; raises the first :class:`ConfigError`."""
    out = []
    for document in parse_documents(text, source, limits):
        for prefix, value in iter_objects(document, source):
            out.append(
                resource_from_json(
                    value,
                    source=source,
                    index=document.index,
                    prefix=prefix,
                    line_of=document.line_of,
                )
            )
    return out


@attrs.frozen
class LoadedObject:
    """One object of a file that loaded: the resource, its document, where it sits in it
    (``prefix``: ``""`` or ``items[i]`` of a List) and the JSON it was made from."""

    resource: Resource
    document: Document
    prefix: str
    value: JsonValue


def load_leniently(
    text: str, source: str, limits: LoadLimits = DEFAULT_LIMITS
) -> Iterator[LoadedObject | Problem]:
    """Every object of one file's text, or the problem that stopped it, in order: what
    ``validate`` and ``analyze`` read (a bad document does not hide the others)."""
    try:
        documents = parse_documents(text, source, limits)
    except ConfigError as exc:
        yield exc.problem
        return
    for document in documents:
        try:
            objects = list(iter_objects(document, source))
        except ConfigError as exc:
            yield exc.problem
            continue
        for prefix, value in objects:
            try:
                resource = resource_from_json(
                    value,
                    source=source,
                    index=document.index,
                    prefix=prefix,
                    line_of=document.line_of,
                )
            except ConfigError as exc:
                yield exc.problem
                continue
            yield LoadedObject(resource, document, prefix, value)


def load_resources(source: Source, *, limits: LoadLimits | None = None) -> list[Resource]:
    """Load Istio resources from YAML or JSON.

    ``source`` is text, bytes, a path (a file, or a folder read recursively) or an open file.
    Multi-document YAML and Kubernetes ``List`` objects are flattened in order; empty
    documents are skipped. Spec values are read the way Istio reads them (durations like
    ``5m`` are accepted). Raises a :class:`ConfigError` subclass naming the source, document
    index, kind/namespace/name, field path and line of the first problem; a source beyond
    ``limits`` (default :class:`LoadLimits()`: 8 MiB, depth 100, ...) raises
    :class:`LimitError`.
    """
    limits = DEFAULT_LIMITS if limits is None else limits
    out: list[Resource] = []
    for name, text in read_source(source, limits):
        out.extend(resources_from_text(text, name, limits))
    return out


def _yaml_dump(value: JsonValue) -> str:
    dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(
        value,
        Dumper=dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )


def dump_resources(resources: Iterable[Resource], format: Literal["yaml", "json"] = "yaml") -> str:
    """Write resources as text that ``kubectl apply -f`` accepts.

    ``"yaml"`` gives one document per resource separated by ``---``; ``"json"`` gives the
    single object for one resource, otherwise a ``v1`` ``List``. Loading the output gives the
    same resources back.
    """
    objects = [resource.to_dict() for resource in resources]
    if format == "yaml":
        return "---\n".join(_yaml_dump(obj) for obj in objects)
    if format == "json":
        payload: JsonValue
        if len(objects) == 1:
            payload = objects[0]
        else:
            payload = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"format must be 'yaml' or 'json', not {format!r}")
