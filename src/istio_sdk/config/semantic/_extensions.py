"""WasmPlugin and TrafficExtension: module URL, checksum, VM environment, traffic selectors."""

from __future__ import annotations

from typing import Any

from istio_sdk.config import _go as go
from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._report import Report, items, number, obj, text

_SCHEMES = ("", "file", "http", "https", "oci")
_HEX = frozenset("0123456789abcdef")


def check_wasm_plugin(report: Report, spec: dict[str, Any]) -> None:
    p.policy_targets(report, spec)
    _url(report, "spec.url", text(spec, "url"))
    _sha(report, "spec.sha256", text(spec, "sha256"))
    if len(text(spec, "imagePullSecret")) > 253:
        report.error(
            "spec.imagePullSecret", "imagePullSecret field must be less than 253 characters long"
        )
    if len(text(spec, "pluginName")) > 256:
        report.error("spec.pluginName", "pluginName field must be less than 255 characters long")
    _vm_config(report, "spec.vmConfig", obj(spec, "vmConfig"))
    _match(report, "spec.match", items(spec, "match"))


def check_traffic_extension(report: Report, spec: dict[str, Any]) -> None:
    wasm, lua = obj(spec, "wasm"), obj(spec, "lua")
    if (wasm is None) == (lua is None):
        report.error("spec", "exactly one of wasm or lua must be set")
    p.policy_targets(report, spec, single_ref=False)
    if lua is not None:
        code = text(lua, "inlineCode")
        if not code:
            report.error("spec.lua.inlineCode", "lua.inlineCode cannot be empty")
        elif len(code.encode("utf-8", "surrogatepass")) > 65536:
            report.error("spec.lua.inlineCode", "lua.inlineCode exceeds maximum size of 64KB")
    if wasm is not None:
        _url(report, "spec.wasm.url", text(wasm, "url"))
        _sha(report, "spec.wasm.sha256", text(wasm, "sha256"))
        if len(text(wasm, "imagePullSecret")) > 253:
            report.error(
                "spec.wasm.imagePullSecret",
                "imagePullSecret field must be less than 253 characters long",
            )
        if len(text(wasm, "pluginName")) > 256:
            report.error(
                "spec.wasm.pluginName", "pluginName field must be less than 256 characters long"
            )
        _vm_config(report, "spec.wasm.vmConfig", obj(wasm, "vmConfig"))
    _match(report, "spec.match", items(spec, "match"))


def _url(report: Report, path: str, url: str) -> None:
    if not url:
        report.error(path, "url field needs to be set")
        return
    try:
        scheme = go.parse_request_uri(url)
        go.parse_url(url)
    except ValueError as first:
        try:  # a bare "registry/image:tag" is read as if it were http://...
            scheme = go.parse_request_uri("http://" + url)
        except ValueError:
            report.error(path, f"failed to parse url: parse {p.go_quote(url)}: {first}")
            return
        try:
            go.parse_url("http://" + url)
        except ValueError as exc:
            report.error(
                path, f"failed to strict parse url: parse {p.go_quote('http://' + url)}: {exc}"
            )
            return
    if scheme not in _SCHEMES:
        report.error(path, f"url contains unsupported scheme: {p.clip(scheme)}")


def _sha(report: Report, path: str, sha: str) -> None:
    if not sha:
        return
    if len(sha) != 64:
        report.error(path, "sha256 field must be 64 characters long")
    elif not set(sha) <= _HEX:
        report.error(path, "sha256 field must match [a-f0-9]{64} pattern")


def _vm_config(report: Report, path: str, vm: dict[str, Any] | None) -> None:
    names: set[str] = set()
    for i, env in enumerate(items(vm, "env")):
        where = f"{path}.env[{i}]"
        if not isinstance(env, dict):
            continue
        name = text(env, "name")
        if not name:
            report.error(f"{where}.name", "spec.vmConfig.env invalid")
            return
        if len(name) > 256:
            report.error(f"{where}.name", "env.name field must be less than 255 characters long")
            return
        if name in names:
            report.error(f"{where}.name", "duplicate env")
            return
        names.add(name)
        if (text(env, "valueFrom") or "INLINE") != "INLINE" and text(env, "value"):
            report.error(f"{where}.value", "value may only be set when valueFrom is INLINE")
            return


def _match(report: Report, path: str, selectors: list[Any]) -> None:
    for i, selector in enumerate(selectors):
        if not isinstance(selector, dict):
            report.error(f"{path}[{i}]", f"spec.Match[{i}] is nil")
            return
        for j, port in enumerate(items(selector, "ports")):
            value = number(port, "number")
            if value <= 0 or value > 65535:
                report.error(
                    f"{path}[{i}].ports[{j}].number",
                    f"spec.Match[{i}].Ports[{j}] is out of range: {value}",
                )
                return
