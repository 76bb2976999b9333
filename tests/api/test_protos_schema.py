"""protos/ must match Istio's wire schema (../shared/istio-api/schema.json) item for item.

The protos are compiled with protoc (grpcio-tools) with only the well-known types on the include
path, and every package, message, field (name, number, type, label, oneof, json name), enum
value and service method is compared with the schema facts, in both directions.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"

FDP = descriptor_pb2.FieldDescriptorProto
_TYPE_NAMES = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in FDP.Type.items()  # type: ignore[attr-defined]
}
# Files that protos/ carries only so that it compiles on its own (the schema references them).
_SUPPORT_FILES = {"google/api/field_behavior.proto", "google/rpc/status.proto"}
# Files from istio/istio rather than istio/api (schema.json does not list them), at the path they
# have there; their wire facts are recorded below, from istio/istio's pkg/dns/proto/nds.proto.
_ISTIO_ISTIO_FILES = {"pkg/dns/proto/nds.proto"}
_NDS_FACTS: dict[str, Any] = {
    "file": "pkg/dns/proto/nds.proto",
    "package": "istio.networking.nds.v1",
    "syntax": "proto3",
    "messages": [
        {
            "name": "NameTable",
            "fields": [
                {
                    "name": "table",
                    "number": 1,
                    "type": "message",
                    "repeated": True,
                    "type_name": "istio.networking.nds.v1.NameTable.TableEntry",
                }
            ],
            "messages": [
                {
                    "name": "NameInfo",
                    "fields": [
                        {"name": "ips", "number": 1, "type": "string", "repeated": True},
                        {"name": "registry", "number": 2, "type": "string"},
                        {"name": "shortname", "number": 3, "type": "string"},
                        {"name": "namespace", "number": 4, "type": "string"},
                        {
                            "name": "alt_hosts",
                            "number": 5,
                            "type": "string",
                            "repeated": True,
                            "json_name": "altHosts",
                            "deprecated": True,
                        },
                    ],
                },
                {
                    "name": "TableEntry",
                    "map_entry": True,
                    "fields": [
                        {"name": "key", "number": 1, "type": "string"},
                        {
                            "name": "value",
                            "number": 2,
                            "type": "message",
                            "type_name": "istio.networking.nds.v1.NameTable.NameInfo",
                        },
                    ],
                },
            ],
        }
    ],
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("protos") / "istio.pb"
    files = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"--descriptor_set_out={out}",
            *files,
        ],
        check=True,
        cwd=PROTOS,
    )
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {f.name: f for f in fds.file}


@pytest.fixture(scope="module")
def istio_api_schema(shared_dir: pathlib.Path) -> dict[str, Any]:
    data = json.loads((shared_dir / "istio-api" / "schema.json").read_text())
    return {f["file"]: f for f in data["files"]}


@pytest.fixture(scope="module")
def schema(istio_api_schema: dict[str, Any]) -> dict[str, Any]:
    """schema.json's files plus the istio/istio files protos/ carries."""
    assert not _ISTIO_ISTIO_FILES & set(istio_api_schema), "now in istio/api: drop it here"
    return {**istio_api_schema, _NDS_FACTS["file"]: _NDS_FACTS}


def _field_facts(field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "name": field.name,
        "number": field.number,
        "type": _TYPE_NAMES[field.type],
        "json_name": field.json_name,
        "repeated": field.label == FDP.LABEL_REPEATED,
        "oneof_index": field.oneof_index if field.HasField("oneof_index") else None,
        "proto3_optional": field.proto3_optional,
    }
    if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
        facts["type_name"] = field.type_name.lstrip(".")
    return facts


def _schema_field_facts(field: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "name": field["name"],
        "number": field["number"],
        "type": field["type"],
        # schema.json omits json_name when it equals the name itself
        "json_name": field.get("json_name", field["name"]),
        "repeated": bool(field.get("repeated")),
        "oneof_index": field.get("oneof_index"),
        "proto3_optional": bool(field.get("proto3_optional")),
    }
    if "type_name" in field:
        facts["type_name"] = field["type_name"]
    return facts


def _compare_enum(
    path: str, ours: descriptor_pb2.EnumDescriptorProto, theirs: dict[str, Any]
) -> list[str]:
    a = [(v.name, v.number) for v in ours.value]
    b = [(v["name"], v["number"]) for v in theirs["values"]]
    return [] if a == b else [f"{path}: enum values {a} != schema {b}"]


def _compare_message(
    path: str, ours: descriptor_pb2.DescriptorProto, theirs: dict[str, Any]
) -> list[str]:
    problems: list[str] = []
    ours_fields = [_field_facts(f) for f in ours.field]
    theirs_fields = [_schema_field_facts(f) for f in theirs["fields"]]
    if ours_fields != theirs_fields:
        for a, b in zip(ours_fields, theirs_fields, strict=False):
            if a != b:
                problems.append(f"{path}.{b['name']}: {a} != schema {b}")
        if len(ours_fields) != len(theirs_fields):
            problems.append(f"{path}: {len(ours_fields)} fields, schema has {len(theirs_fields)}")
    oneofs = [o.name for o in ours.oneof_decl]
    if oneofs != theirs.get("oneofs", []):
        problems.append(f"{path}: oneofs {oneofs} != schema {theirs.get('oneofs', [])}")
    if ours.options.map_entry != bool(theirs.get("map_entry")):
        problems.append(f"{path}: map_entry differs")
    problems += _compare_children(path, ours, theirs)
    return problems


def _compare_children(path: str, ours: Any, theirs: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    msgs = (
        ours.message_type
        if isinstance(ours, descriptor_pb2.FileDescriptorProto)
        else ours.nested_type
    )
    our_msgs = {m.name: m for m in msgs}
    their_msgs = {m["name"]: m for m in theirs.get("messages", [])}
    # Declaration order of nested types is not part of the wire format (protoc places map
    # entries where the map field is declared); compare the sets.
    if set(our_msgs) != set(their_msgs):
        problems.append(f"{path}: messages {sorted(our_msgs)} != schema {sorted(their_msgs)}")
    for name in our_msgs.keys() & their_msgs.keys():
        problems += _compare_message(f"{path}.{name}", our_msgs[name], their_msgs[name])
    our_enums = {e.name: e for e in ours.enum_type}
    their_enums = {e["name"]: e for e in theirs.get("enums", [])}
    if set(our_enums) != set(their_enums):
        problems.append(f"{path}: enums {sorted(our_enums)} != schema {sorted(their_enums)}")
    for name in our_enums.keys() & their_enums.keys():
        problems += _compare_enum(f"{path}.{name}", our_enums[name], their_enums[name])
    return problems


def test_protos_cover_exactly_the_schema_files(
    compiled: dict[str, Any], schema: dict[str, Any]
) -> None:
    ours = set(compiled) - _SUPPORT_FILES
    ours = {name for name in ours if not name.startswith("google/protobuf/")}
    assert ours == set(schema)


def test_every_file_matches_the_schema(compiled: dict[str, Any], schema: dict[str, Any]) -> None:
    problems: list[str] = []
    for name, facts in sorted(schema.items()):
        proto = compiled[name]
        if proto.package != facts["package"]:
            problems.append(f"{name}: package {proto.package} != {facts['package']}")
        if proto.syntax != facts["syntax"]:
            problems.append(f"{name}: syntax {proto.syntax} != {facts['syntax']}")
        problems += _compare_children(facts["package"], proto, facts)
        services = [
            {
                "name": s.name,
                "methods": [
                    {
                        "name": m.name,
                        "input": m.input_type.lstrip("."),
                        "output": m.output_type.lstrip("."),
                        "client_streaming": m.client_streaming,
                        "server_streaming": m.server_streaming,
                    }
                    for m in s.method
                ],
            }
            for s in proto.service
        ]
        expected = [
            {
                "name": s["name"],
                "methods": [
                    {
                        "name": m["name"],
                        "input": m["input"],
                        "output": m["output"],
                        "client_streaming": bool(m.get("client_streaming")),
                        "server_streaming": bool(m.get("server_streaming")),
                    }
                    for m in s["methods"]
                ],
            }
            for s in facts.get("services", [])
        ]
        if services != expected:
            problems.append(f"{name}: services {services} != schema {expected}")
    assert problems == []


def test_required_and_deprecated_marks_follow_the_schema(
    compiled: dict[str, Any], schema: dict[str, Any]
) -> None:
    """REQUIRED fields carry google.api.field_behavior; deprecated ones the deprecated option."""
    problems: list[str] = []

    def walk(path: str, ours: Any, theirs: dict[str, Any]) -> None:
        msgs = (
            ours.message_type
            if isinstance(ours, descriptor_pb2.FileDescriptorProto)
            else ours.nested_type
        )
        by_name = {m.name: m for m in msgs}
        for msg in theirs.get("messages", []):
            proto = by_name[msg["name"]]
            fields = {f.name: f for f in proto.field}
            for field in msg["fields"]:
                ours_field = fields[field["name"]]
                # field_behavior (1052) is an extension; it shows up in the serialized options.
                required = b"\xe0A\x02" in ours_field.options.SerializeToString()
                if required != bool(field.get("required")):
                    problems.append(f"{path}.{msg['name']}.{field['name']}: required mark")
                if ours_field.options.deprecated != bool(field.get("deprecated")):
                    problems.append(f"{path}.{msg['name']}.{field['name']}: deprecated mark")
            walk(f"{path}.{msg['name']}", proto, msg)

    for name, facts in schema.items():
        walk(facts["package"], compiled[name], facts)
    assert problems == []
