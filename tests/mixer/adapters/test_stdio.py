"""stdio: one structured line per instance, in Istio's (zap's) layout."""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import json
import threading

import pytest

from istio_sdk.mixer.adapters import (
    AdapterParamsError,
    StdioHandler,
    build_handler,
    dispatch_report,
)
from istio_sdk.mixer.adapters.stdio import StdioParams
from istio_sdk.mixer.templates import LogEntry, Metric, ReportNothing

WHEN = datetime.datetime(2019, 9, 12, 8, 30, 1, 123456, tzinfo=datetime.UTC)


async def test_log_entry_line_layout() -> None:
    out = io.StringIO()
    handler = await build_handler("stdio", "stdio.handler.istio-system", {}, stream=out)
    entry = LogEntry(
        "accesslog.instance.istio-system",
        {
            "responseCode": 200,
            "latency": datetime.timedelta(milliseconds=1, microseconds=500),
            "sourceIp": ipaddress.ip_address("10.1.2.3"),
            "user": "alice",
            "ratio": 0.25,
            "big": 1e21,
            "headers": {"b": "2", "a": "1"},
            "raw": b"\x00\x01",
            "started": WHEN,
        },
        timestamp=WHEN,
        severity="Warning",
    )
    status = await dispatch_report(handler, [entry, LogEntry("other.instance.ns", severity="ERR")])
    assert status.ok
    first, second = out.getvalue().splitlines()
    assert first == (
        '{"level":"info","time":"2019-09-12T08:30:01.123456Z","instance":"accesslog.instance.istio-system",'
        '"big":1000000000000000000000,"headers":{"a":"1","b":"2"},"latency":"1.5ms","ratio":0.25,'
        '"raw":"AAE=","responseCode":200,"sourceIp":"10.1.2.3","started":"2019-09-12T08:30:01.123456Z",'
        '"user":"alice"}'
    )  # "Warning" is not in Istio's severity map: info
    assert json.loads(second) == {
        "level": "error",
        "time": "0001-01-01T00:00:00.000000Z",
        "instance": "other.instance.ns",
    }


async def test_metric_lines_and_the_console_encoding() -> None:
    out = io.StringIO()
    handler = await StdioHandler.create(
        "stdio.handler.ns",
        {"outputAsJson": False, "metricLevel": "WARNING"},
        stream=out,
        now=lambda: WHEN,
    )
    await handler.handle_report(
        [Metric("requestcount.instance.ns", 1, {"code": 200, "app": "reviews"})]
    )
    assert out.getvalue() == (
        '2019-09-12T08:30:01.123456Z\twarn\trequestcount.instance.ns\t{"value":1,"app":"reviews","code":200}\n'
    )


async def test_file_stream_and_unsupported_templates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mixer.log"
    handler = await build_handler(
        "stdio", "s.handler.ns", {"logStream": "FILE", "outputPath": str(path)}
    )
    await handler.handle_report([LogEntry("a.instance.ns", {"x": "y"}, timestamp=WHEN)])
    status = await dispatch_report(handler, [ReportNothing("r.instance.ns")])
    assert "does not handle template reportnothing" in status.message
    await handler.close()
    assert json.loads(path.read_text())["x"] == "y"


async def test_a_file_that_cannot_be_opened_fails_the_build(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from istio_sdk.mixer.adapters import HandlerBuildError

    with pytest.raises(HandlerBuildError, match="could not open"):
        await build_handler(
            "stdio", "s.handler.ns", {"logStream": "FILE", "outputPath": str(tmp_path / "no" / "x")}
        )
    # a NUL byte, or a lone surrogate from a JSON escape, cannot name a file
    for stream in ("FILE", "ROTATED_FILE"):
        for bad in ("a\x00b", "x\ud800"):
            with pytest.raises(HandlerBuildError, match="could not open"):
                await build_handler(
                    "stdio",
                    "s.handler.ns",
                    {"logStream": stream, "outputPath": str(tmp_path / bad)},
                )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"outputPath": "/tmp/x"}, "cannot specify an output path"),
        ({"logStream": "ROTATED_FILE"}, "need a valid output path"),
        ({"logStream": "SYSLOG"}, "unknown value 'SYSLOG'"),
        ({"severityLevels": {"info": "LOUD"}}, "severityLevels.info: unknown value 'LOUD'"),
        ({"maxRotatedFiles": -2}, "must not be negative"),
        ({"outputAsJson": "true"}, "expected true or false"),
    ],
)
def test_bad_params(params: dict[str, object], message: str) -> None:
    with pytest.raises(AdapterParamsError) as caught:
        StdioParams.from_dict(params)
    assert message in str(caught.value)


async def test_rotated_file_rotates_by_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mixer.log"
    handler = await build_handler(
        "stdio",
        "s.handler.ns",
        {
            "logStream": "ROTATED_FILE",
            "outputPath": str(path),
            "maxMegabytesBeforeRotation": 1,
            "maxRotatedFiles": 2,
        },
    )
    big = LogEntry("a.instance.ns", {"blob": "x" * 400_000}, timestamp=WHEN)
    for _ in range(8):
        assert (await dispatch_report(handler, [big])).ok
    await handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["mixer.log", "mixer.log.1", "mixer.log.2"]
    assert all(json.loads(line)["blob"] for line in path.read_text().splitlines())


class _StalledStream(io.StringIO):
    """An output whose reader has stopped reading: ``write`` blocks until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.released_in_time: bool | None = None

    def write(self, text: str) -> int:
        self.entered.set()
        self.released_in_time = self.release.wait(timeout=5)
        return super().write(text)


async def test_a_stalled_output_does_not_block_the_event_loop() -> None:
    out = _StalledStream()
    handler = await build_handler("stdio", "stdio.handler.istio-system", {}, stream=out)
    report = asyncio.create_task(dispatch_report(handler, [LogEntry("a.instance.ns")]))
    await asyncio.to_thread(out.entered.wait, 10)
    out.release.set()  # only reachable while the write is stuck if the loop is still free
    status = await asyncio.wait_for(report, timeout=10)
    assert status.ok
    assert out.released_in_time is True
    assert '"instance":"a.instance.ns"' in out.getvalue()
