"""``stdio``: log entries and metrics as structured lines, in Istio 1.3's layout.

Each instance becomes one line. As JSON (``outputAsJson``, the default) the keys are ``level``
(``info``/``warn``/``error``), ``time`` (UTC, microseconds, ``Z``), ``instance`` (the
instance's full name), then the log entry's variables, or for a metric ``value`` and the
dimensions, in sorted key order, with no message key: zap's encoding, which Istio's adapter
uses. Values are written as zap writes them: numbers as numbers, durations as Go durations
(``1.5s``), times like ``time``, IP addresses as text, raw bytes in base64, maps as objects.
Without JSON a line is ``time<TAB>level<TAB>instance<TAB>{fields}``.

Params (``adapter.stdio.config.Params``): ``logStream`` STDOUT (default) / STDERR / FILE /
ROTATED_FILE with ``outputPath``, ``severityLevels`` (a log entry's ``severity`` to INFO,
WARNING or ERROR; unknown severities are info; Istio's default map covers ``INFO``, ``warn``,
``ERR``, ``fatal``...), ``metricLevel``, ``outputAsJson``, ``outputLevel``,
``maxMegabytesBeforeRotation``, ``maxRotatedFiles``, ``maxDaysBeforeRotation``. Like Istio 1.3,
which writes through zap's ``Core.Write`` without its level check, ``outputLevel`` does not
filter lines.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import enum
import ipaddress
import json
import logging
import logging.handlers
import math
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TextIO

import attrs

from istio_sdk import timeutil
from istio_sdk.mixer.adapters import _values
from istio_sdk.mixer.adapters._params import Reader
from istio_sdk.mixer.adapters.base import AdapterError, Handler, HandlerBuildError
from istio_sdk.mixer.templates import LogEntry, Metric, ReportInstance, Value

_READ = Reader("stdio")
_GO_ZERO_TIME = "0001-01-01T00:00:00.000000Z"


class Stream(enum.Enum):
    STDOUT = 0
    STDERR = 1
    FILE = 2
    ROTATED_FILE = 3


class Level(enum.Enum):
    INFO = 0
    WARNING = 1
    ERROR = 2


_ZAP_LEVEL = {Level.INFO: "info", Level.WARNING: "warn", Level.ERROR: "error"}

DEFAULT_SEVERITY_LEVELS: Mapping[str, Level] = {
    **dict.fromkeys(["INFORMATIONAL", "informational", "INFO", "info"], Level.INFO),
    **dict.fromkeys(["WARNING", "warning", "WARN", "warn"], Level.WARNING),
    **dict.fromkeys(["ERROR", "error", "ERR", "err", "FATAL", "fatal"], Level.ERROR),
}


@attrs.frozen
class StdioParams:
    log_stream: Stream = Stream.STDOUT
    severity_levels: Mapping[str, Level] = attrs.field(
        factory=lambda: dict(DEFAULT_SEVERITY_LEVELS)
    )
    metric_level: Level = Level.INFO
    output_as_json: bool = True
    output_level: Level = Level.INFO
    output_path: str = ""
    max_megabytes_before_rotation: int = 100 * 1024 * 1024
    max_days_before_rotation: int = 30
    max_rotated_files: int = 1000

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> StdioParams:
        names = [field.name for field in attrs.fields(cls)]
        found = _READ.fields(params, "", names)
        values: dict[str, Any] = {}
        if "log_stream" in found:
            values["log_stream"] = _READ.enum(*found["log_stream"], Stream)
        for name in ("metric_level", "output_level"):
            if name in found:
                values[name] = _READ.enum(*found[name], Level)
        if "severity_levels" in found:
            path, value = found["severity_levels"]
            if not isinstance(value, Mapping):
                raise _READ.error(path, "expected an object of severity: level")
            values["severity_levels"] = {
                _READ.string(path, key): _READ.enum(f"{path}.{key}", level, Level)
                for key, level in value.items()
            }
        if "output_as_json" in found:
            values["output_as_json"] = _READ.boolean(*found["output_as_json"])
        if "output_path" in found:
            values["output_path"] = _READ.string(*found["output_path"])
        for name in (
            "max_megabytes_before_rotation",
            "max_days_before_rotation",
            "max_rotated_files",
        ):
            if name in found:
                number = _READ.integer(*found[name], bits=32)
                if number < 0:
                    raise _READ.error(found[name][0], "must not be negative")
                values[name] = number
        result = cls(**values)
        if result.log_stream in (Stream.STDOUT, Stream.STDERR):
            if result.output_path:
                raise _READ.error(
                    "outputPath",
                    "cannot specify an output path when using a STDOUT or STDERR log stream",
                )
        elif not result.output_path:
            raise _READ.error(
                "outputPath",
                "need a valid output path when using a FILE or ROTATED_FILE log stream",
            )
        return result


def _zap_value(value: Value | None) -> Any:
    """A value as zap's JSON encoder writes it (``zap.Any``)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return _values.stringify(value)
        return _RawNumber(_values.stringify(value))
    if isinstance(value, datetime.datetime):
        return _values.rfc3339_micros(value)
    if isinstance(value, datetime.timedelta):
        return _values.go_duration(value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return _values.ip_text(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return {key: value[key] for key in sorted(value)}


@attrs.frozen
class _RawNumber:
    """A float as Go writes it (``strconv`` ``'f'`` format: ``1e21`` is all digits)."""

    text: str


def _dumps(value: Any) -> str:
    if isinstance(value, _RawNumber):
        return value.text
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_dumps(v)}" for k, v in value.items())
            + "}"
        )
    return json.dumps(value, ensure_ascii=False)


def format_line(
    params: StdioParams, level: Level, when: str, instance: str, fields: Sequence[tuple[str, Any]]
) -> str:
    """One output line (without the newline)."""
    if params.output_as_json:
        head = {"level": _ZAP_LEVEL[level], "time": when, "instance": instance}
        return _dumps({**head, **dict(fields)})
    body = _dumps(dict(fields)) if fields else ""
    parts = [when, _ZAP_LEVEL[level], instance] + ([body] if body else [])
    return "\t".join(parts)


class StdioHandler(Handler):
    adapter: ClassVar[str] = "stdio"
    templates: ClassVar[frozenset[str]] = frozenset({"logentry", "metric"})

    def __init__(
        self,
        name: str,
        params: StdioParams,
        *,
        stream: TextIO | None = None,
        now: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        super().__init__(name)
        self.params = params
        self._now = now or timeutil.utcnow
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._rotating: logging.handlers.RotatingFileHandler | None = None
        if stream is not None:
            self._stream: TextIO | None = stream
        elif params.log_stream is Stream.STDOUT:
            self._stream = sys.stdout
        elif params.log_stream is Stream.STDERR:
            self._stream = sys.stderr
        elif params.log_stream is Stream.FILE:
            try:
                self._file = open(params.output_path, "a", encoding="utf-8")  # noqa: SIM115
            except (OSError, ValueError) as exc:  # ValueError: a NUL or a lone surrogate
                raise HandlerBuildError(
                    f"stdio: could not open {params.output_path}: {exc}"
                ) from None
            self._stream = self._file
        else:
            try:
                self._rotating = logging.handlers.RotatingFileHandler(
                    params.output_path,
                    maxBytes=params.max_megabytes_before_rotation * 1024 * 1024,
                    backupCount=params.max_rotated_files,
                    encoding="utf-8",
                )
            except (OSError, ValueError) as exc:  # ValueError: a NUL or a lone surrogate
                raise HandlerBuildError(
                    f"stdio: could not open {params.output_path}: {exc}"
                ) from None
            self._rotating.setFormatter(logging.Formatter("%(message)s"))
            self._stream = None

    @classmethod
    async def create(
        cls,
        name: str,
        params: Mapping[str, Any] | None,
        *,
        stream: TextIO | None = None,
        now: Callable[[], datetime.datetime] | None = None,
    ) -> StdioHandler:
        return cls(name, StdioParams.from_dict(params), stream=stream, now=now)

    def _write(self, line: str) -> None:
        with self._lock:  # reports are written from worker threads, one line at a time
            if self._rotating is not None:
                record = logging.LogRecord(
                    "istio_sdk.mixer.stdio", logging.INFO, "", 0, line, None, None
                )
                self._rotating.emit(record)
                return
            assert self._stream is not None
            self._stream.write(line + "\n")
            self._stream.flush()

    def _emit(self, instances: Sequence[ReportInstance]) -> list[str]:
        problems: list[str] = []
        for line in self.lines(instances):
            try:
                self._write(line)
            except (OSError, ValueError) as exc:
                problems.append(str(exc))
        return problems

    def lines(self, instances: Sequence[ReportInstance]) -> list[str]:
        """The lines ``instances`` produce (the pure part of :meth:`handle_report`)."""
        out: list[str] = []
        for instance in instances:
            if isinstance(instance, LogEntry):
                level = self.params.severity_levels.get(instance.severity, Level.INFO)
                when = (
                    _values.rfc3339_micros(instance.timestamp)
                    if instance.timestamp
                    else _GO_ZERO_TIME
                )
                fields = [
                    (k, _zap_value(instance.variables[k])) for k in sorted(instance.variables)
                ]
            elif isinstance(instance, Metric):
                level = self.params.metric_level
                when = _values.rfc3339_micros(self._now())
                fields = [("value", _zap_value(instance.value))]
                fields += [
                    (k, _zap_value(instance.dimensions[k])) for k in sorted(instance.dimensions)
                ]
            else:
                raise self._unsupported(instance.template)
            out.append(format_line(self.params, level, when, instance.name, fields))
        return out

    async def handle_report(self, instances: Sequence[ReportInstance]) -> None:
        # formatting and (possibly blocking) writes run off the loop: a stdout whose reader
        # stalls, or a slow disk, must not stop the server answering Check
        problems = await asyncio.to_thread(self._emit, instances)
        if problems:
            raise AdapterError(f"stdio: could not write {len(problems)} line(s): {problems[0]}")

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._rotating is not None:
            self._rotating.close()
            self._rotating = None
