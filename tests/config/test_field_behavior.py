"""The generated REQUIRED-field table against Istio's wire schema."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from istio_sdk.api._field_behavior import REQUIRED_FIELDS
from istio_sdk.config._kinds import message_class


def _required_in_schema(schema: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}

    def visit(prefix: str, message: dict[str, Any]) -> None:
        name = f"{prefix}.{message['name']}"
        marked = {f["name"] for f in message.get("fields", ()) if f.get("required")}
        if marked:
            found[name] = marked
        for nested in message.get("messages", ()):
            visit(name, nested)

    for file in schema["files"]:
        for message in file.get("messages", ()):
            visit(file["package"], message)
    return found


def test_table_matches_the_marks_in_istios_schema(shared_dir: pathlib.Path) -> None:
    schema = json.loads((shared_dir / "istio-api" / "schema.json").read_text())
    expected = _required_in_schema(schema)
    ours = {name: {attr for attr, _ in fields} for name, fields in REQUIRED_FIELDS.items()}
    assert ours == expected


def test_table_names_real_attributes_and_json_names() -> None:
    for full_name, fields in REQUIRED_FIELDS.items():
        cls = message_class(full_name)
        for attribute, json_name in fields:
            assert attribute in cls.__dataclass_fields__, (full_name, attribute)
            assert json_name[0].islower() and "_" not in json_name, json_name
