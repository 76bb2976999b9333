"""``MixerServer``: Istio 1.3's ``istio.mixer.v1.Mixer`` (Check, Report) over grpclib.

The server is a thin loop around :mod:`istio_sdk.mixer.runtime`: it decodes the request's
``CompressedAttributes`` (:mod:`istio_sdk.mixer.wire`), asks the current
:class:`~istio_sdk.mixer.runtime.Dispatcher` and encodes its answer. It follows a
:class:`~istio_sdk.config.ConfigStore`: every change to a Mixer kind rebuilds the routing snapshot
(in a worker thread: compiling expressions is CPU work) and the handlers whose params changed,
then swaps them in; requests in flight finish on the snapshot they started with. A rule that
fails to compile, or a handler that fails to build, is a
:class:`~istio_sdk.mixer.runtime.ConfigProblem` (logged, and listed by :attr:`problems` and
``/debug/config``); the rest keeps serving.

Status codes, as Mixer 1.3 answers (mixer/pkg/api/grpcServer.go):

- ``global_word_count`` above 222: INTERNAL ``inconsistent global dictionary versions used``;
- bytes that are no ``CheckRequest`` / ``ReportRequest``: INTERNAL ``grpc: error unmarshalling
  request: ...``;
- an index naming no word (Check): that attribute is absent, the call goes on;
- an instance that cannot be built from the attributes: INTERNAL ``performing check operation
  failed: ...`` (Check), UNKNOWN (Report);
- a DELTA Report set with a bad index: UNKNOWN ``request could not be processed due to invalid
  attributes: ...``;
- a handler that fails or does not answer within ``adapter_timeout``: its status in the
  precondition (INTERNAL, DEADLINE_EXCEEDED) for Check, UNKNOWN for Report.

Requests over 64 KiB are parsed, and Report batches and Checks carrying many attributes are
decoded and planned, in a worker thread so that one large request does not stall the loop
serving the others.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpclib.const
from grpclib.const import Status as Code
from grpclib.exceptions import GRPCError

from istio_sdk._grpc import GrpcSettings, create_server, recv_request_message
from istio_sdk._http import MonitoringHttpServer, json_body
from istio_sdk._metrics import CONTENT_TYPE
from istio_sdk._net import bind_tcp, bound_port
from istio_sdk.api.google.rpc import Status
from istio_sdk.api.istio.mixer.v1 import (
    CheckRequest,
    CheckResponse,
    CheckResponsePreconditionResult,
    CheckResponseQuotaResult,
    CompressedAttributes,
    HeaderOperation,
    HeaderOperationOperation,
    MixerBase,
    ReportRequest,
    ReportResponse,
    RouteDirective,
)
from istio_sdk.codec import load_codec
from istio_sdk.config import ConfigStore, Event
from istio_sdk.mixer.adapters import DEFAULT_ADAPTER_TIMEOUT, Handler, build_handler
from istio_sdk.mixer.adapters.base import AdapterError, shorten
from istio_sdk.mixer.adapters.prometheus import PrometheusHandler
from istio_sdk.mixer.errors import AttributesError, DispatchError, GlobalWordCountError
from istio_sdk.mixer.runtime.config import (
    DEFAULT_CONFIG_NAMESPACE,
    LEGACY_ADAPTER_KINDS,
    LEGACY_TEMPLATE_KINDS,
    ConfigProblem,
    RoutingConfig,
    build_routing,
)
from istio_sdk.mixer.runtime.dispatch import (
    CheckOutcome,
    CheckPlan,
    Dispatcher,
    QuotaRequest,
    ReportPlan,
)
from istio_sdk.mixer.runtime.referenced import encode_referenced
from istio_sdk.mixer.wire import decode_attributes, decode_report

if TYPE_CHECKING:
    import grpclib.server

__all__ = [
    "DEFAULT_MIXER_PORT",
    "DEFAULT_PROMETHEUS_PORT",
    "MixerServer",
    "MixerService",
    "MixerStats",
]

log = logging.getLogger("istio_sdk.mixer.server")

DEFAULT_MIXER_PORT = 9091
"""Mixer's gRPC port."""
DEFAULT_PROMETHEUS_PORT = 42422
"""Where Istio's prometheus adapter serves ``/metrics``."""

OFFLOAD_ENTRIES = 512
"""A Check with more attribute entries than this is decoded and planned in the worker thread."""

OFFLOAD_QUOTAS = 16
"""A Check asking for more quotas than this has them planned in the worker thread."""

_WATCHED_KINDS = frozenset({"rule", "handler", "instance", "attributemanifest"})
_CHECK_PATH = "/istio.mixer.v1.Mixer/Check"
_REPORT_PATH = "/istio.mixer.v1.Mixer/Report"


def _entries(message: CompressedAttributes) -> int:
    return (
        len(message.words)
        + len(message.strings)
        + len(message.int64s)
        + len(message.doubles)
        + len(message.bools)
        + len(message.timestamps)
        + len(message.durations)
        + len(message.bytes)
        + sum(len(m.entries) + 1 for m in message.string_maps.values())
    )


_NO_ATTRIBUTES = CompressedAttributes()


def _attributes(request: CheckRequest) -> CompressedAttributes:
    # `is None`, not `or`: a message's truth value walks all its fields
    return _NO_ATTRIBUTES if request.attributes is None else request.attributes


def _status(code: Code, message: str = "") -> Status:
    return Status(code=code.value, message=message)


def _route_directive(outcome: CheckOutcome) -> RouteDirective | None:
    if not outcome.request_headers and not outcome.response_headers:
        return None
    return RouteDirective(
        request_header_operations=[
            HeaderOperation(
                name=op.name, value=op.value, operation=HeaderOperationOperation(op.operation)
            )
            for op in outcome.request_headers
        ],
        response_header_operations=[
            HeaderOperation(
                name=op.name, value=op.value, operation=HeaderOperationOperation(op.operation)
            )
            for op in outcome.response_headers
        ],
    )


class MixerStats:
    """Counters of what the server did (``checks``, ``reports``, ``failed`` by reason...)."""

    def __init__(self) -> None:
        self.checks = 0
        self.denied = 0
        self.reports = 0
        self.report_sets = 0
        self.config_builds = 0
        self.failed: collections.Counter[str] = collections.Counter()

    def as_dict(self) -> dict[str, Any]:
        return {
            "checks": self.checks,
            "denied": self.denied,
            "reports": self.reports,
            "report_sets": self.report_sets,
            "config_builds": self.config_builds,
            "failed": dict(self.failed),
        }


class MixerService(MixerBase):  # type: ignore[misc]
    """The grpclib service: receives, hands over to :class:`MixerServer`, sends."""

    def __init__(self, server: MixerServer) -> None:
        self._server = server

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            _CHECK_PATH: grpclib.const.Handler(
                self._handle_check,
                grpclib.const.Cardinality.UNARY_UNARY,
                CheckRequest,
                CheckResponse,
            ),
            _REPORT_PATH: grpclib.const.Handler(
                self._handle_report,
                grpclib.const.Cardinality.UNARY_UNARY,
                ReportRequest,
                ReportResponse,
            ),
        }

    async def _receive(self, stream: grpclib.server.Stream[Any, Any], what: str) -> Any:
        try:
            # large requests (Report batches) are parsed in the worker thread
            request = await recv_request_message(stream, executor=self._server._executor)
        except GRPCError:
            self._server.stats.failed["malformed"] += 1
            raise
        except Exception as exc:  # whatever the decoder raises on garbage bytes
            self._server.stats.failed["malformed"] += 1
            reason = str(exc) or type(exc).__name__
            log.info("%s refused: malformed request: %s", what, reason)
            raise GRPCError(
                Code.INTERNAL, shorten(f"grpc: error unmarshalling request: {reason}")
            ) from None
        if request is None:
            raise GRPCError(Code.INVALID_ARGUMENT, f"empty {what} request")
        return request

    async def _handle_check(
        self, stream: grpclib.server.Stream[CheckRequest, CheckResponse]
    ) -> None:
        request = await self._receive(stream, "Check")
        await stream.send_message(await self._server.check(request))

    async def _handle_report(
        self, stream: grpclib.server.Stream[ReportRequest, ReportResponse]
    ) -> None:
        request = await self._receive(stream, "Report")
        await stream.send_message(await self._server.report(request))


class MixerServer:
    """Mixer over ``store``'s configuration: ``await start(host, port)``, ``await stop()``.

    ``adapter_options`` passes build options to the adapters, by adapter name (for example
    ``{"stdio": {"stream": sys.stderr}}``, ``{"listchecker": {"http": client}}``);
    ``adapter_timeout`` bounds every handler call; rules in ``default_namespace`` apply to
    every request.
    """

    def __init__(
        self,
        store: ConfigStore | None = None,
        *,
        default_namespace: str = DEFAULT_CONFIG_NAMESPACE,
        adapter_timeout: float = DEFAULT_ADAPTER_TIMEOUT,
        adapter_options: Mapping[str, Mapping[str, Any]] | None = None,
        grpc_settings: GrpcSettings | None = None,
    ) -> None:
        self.store = store if store is not None else ConfigStore()
        self.default_namespace = default_namespace
        self.adapter_timeout = adapter_timeout
        self.adapter_options = dict(adapter_options or {})
        self.grpc_settings = grpc_settings or GrpcSettings()
        self.stats = MixerStats()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mixer-core")
        self._dispatcher = Dispatcher(build_routing((), default_namespace=default_namespace), {})
        self._handler_problems: tuple[ConfigProblem, ...] = ()
        self._built: dict[str, tuple[str, Handler]] = {}
        self._unsubscribe: Any = None
        self._reload_task: asyncio.Task[None] | None = None
        self._dirty = False
        self._reload_lock = asyncio.Lock()
        self._retiring: dict[asyncio.Task[None], Handler] = {}
        self._server: grpclib.server.Server | None = None
        self._port: int | None = None
        self._monitoring: MonitoringHttpServer | None = None

    # -- state -----------------------------------------------------------------------------
    @property
    def routing(self) -> RoutingConfig:
        """The routing snapshot requests are served from now."""
        return self._dispatcher.routing

    @property
    def problems(self) -> tuple[ConfigProblem, ...]:
        """What the current configuration left out (rules, instances, handlers), and why."""
        return self._dispatcher.routing.problems + self._handler_problems

    @property
    def handlers(self) -> Mapping[str, Handler]:
        """The handlers in use, by fully qualified name."""
        return self._dispatcher.handlers

    @property
    def port(self) -> int:
        """The bound gRPC port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("MixerServer is not started")
        return self._port

    @property
    def prometheus_port(self) -> int:
        """The bound ``/metrics`` port (after :meth:`start_prometheus`)."""
        if self._monitoring is None or self._monitoring.port is None:
            raise RuntimeError("MixerServer's Prometheus endpoint is not started")
        return self._monitoring.port

    def metrics_text(self) -> bytes:
        """What ``/metrics`` serves: every prometheus handler's metrics."""
        return b"".join(
            handler.render()
            for handler in self._dispatcher.handlers.values()
            if isinstance(handler, PrometheusHandler)
        )

    # -- configuration ---------------------------------------------------------------------
    def _on_change(self, event: Event) -> None:
        kind = event.resource.kind
        if kind in _WATCHED_KINDS or kind in LEGACY_ADAPTER_KINDS or kind in LEGACY_TEMPLATE_KINDS:
            self._dirty = True
            if self._reload_task is None or self._reload_task.done():
                with contextlib.suppress(RuntimeError):  # no loop: the next reload() sees it
                    self._reload_task = asyncio.get_running_loop().create_task(
                        self._follow(), name="mixer-config"
                    )

    async def _follow(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self.reload()
            except Exception:  # never lose the config loop: the last good snapshot stays
                log.exception("Mixer config rebuild failed; the last good config stays")

    async def reload(self) -> RoutingConfig:
        """Rebuild the routing and handlers from the store now and serve them."""
        async with self._reload_lock:  # one rebuild at a time: they share the built handlers
            return await self._reload()

    async def _reload(self) -> RoutingConfig:
        revision = self.store.revision
        resources = self.store.list()
        loop = asyncio.get_running_loop()
        routing = await loop.run_in_executor(
            self._executor,
            lambda: build_routing(
                resources, default_namespace=self.default_namespace, revision=revision
            ),
        )
        handlers, problems = await self._build_handlers(routing)
        old, old_problems = self._built, set(self.problems)
        self._built = {name: (routing.handlers[name].key, h) for name, h in handlers.items()}
        self._dispatcher = Dispatcher(routing, handlers, adapter_timeout=self.adapter_timeout)
        self._handler_problems = tuple(problems)
        self.stats.config_builds += 1
        kept = {id(handler) for _, handler in self._built.values()}
        for _, handler in old.values():
            if id(handler) not in kept:  # calls in flight may still use it: close it later
                task = asyncio.get_running_loop().create_task(self._retire(handler))
                self._retiring[task] = handler
                task.add_done_callback(self._retiring.pop)
        for problem in self.problems:  # each once, when it appears
            if problem not in old_problems:
                log.warning("Mixer config (revision %d): %s", revision, problem)
        log.info(
            "Mixer config revision %d: %d rules, %d handlers, %d problems",
            revision,
            len(routing.rules),
            len(handlers),
            len(self.problems),
        )
        return routing

    async def _retire(self, handler: Handler) -> None:
        await asyncio.sleep(self.adapter_timeout)  # the longest a call in flight can take
        await handler.close()

    async def _build_handlers(
        self, routing: RoutingConfig
    ) -> tuple[dict[str, Handler], list[ConfigProblem]]:
        handlers: dict[str, Handler] = {}
        pending: dict[str, asyncio.Task[Handler]] = {}
        for name, config in routing.handlers.items():
            previous = self._built.get(name)
            if previous is not None and previous[0] == config.key:
                handlers[name] = previous[1]  # unchanged: keep its state (counts, series)
                continue
            options = self.adapter_options.get(config.adapter, {})
            pending[name] = asyncio.ensure_future(
                build_handler(config.adapter, name, config.params, **options)
            )
        problems: list[ConfigProblem] = []
        if pending:
            await asyncio.wait(pending.values())
        for name, task in pending.items():
            exc = task.exception()
            if exc is None:
                handlers[name] = task.result()
            elif isinstance(exc, AdapterError | ValueError | OSError):
                problems.append(ConfigProblem("handler", name, str(exc)))
            else:
                problems.append(ConfigProblem("handler", name, f"{type(exc).__name__}: {exc}"))
        return handlers, problems

    # -- Check -----------------------------------------------------------------------------
    def _plan_check(
        self, dispatcher: Dispatcher, request: CheckRequest
    ) -> tuple[Mapping[str, Any], CheckPlan]:
        bag = decode_attributes(
            _attributes(request),
            global_word_count=request.global_word_count,
            strict=False,
            manifest=dispatcher.routing.manifest,
        )
        return bag, dispatcher.plan_check(bag)

    async def check(self, request: CheckRequest) -> CheckResponse:
        """Answer one Check (raises ``GRPCError`` with Mixer's status when it fails)."""
        self.stats.checks += 1
        dispatcher = self._dispatcher
        gwc = request.global_word_count
        try:  # decoding checks the global word count
            attributes = _attributes(request)
            if _entries(attributes) > OFFLOAD_ENTRIES:
                loop = asyncio.get_running_loop()
                bag, plan = await loop.run_in_executor(
                    self._executor, self._plan_check, dispatcher, request
                )
            else:
                bag, plan = self._plan_check(dispatcher, request)
            outcome = await dispatcher.run_check(plan)
            if outcome.status.ok and request.quotas:
                quotas = {
                    name: QuotaRequest(params.amount, params.best_effort)
                    for name, params in request.quotas.items()
                }
                names = list(quotas)
                if len(names) > OFFLOAD_QUOTAS:
                    plans = await asyncio.get_running_loop().run_in_executor(
                        self._executor, dispatcher.plan_quotas, bag, names
                    )
                else:
                    plans = dispatcher.plan_quotas(bag, names)
                outcome = await dispatcher.run_quotas(
                    outcome, plans, quotas, request.deduplication_id
                )
        except GlobalWordCountError as exc:
            self.stats.failed["global_word_count"] += 1
            raise GRPCError(Code.INTERNAL, str(exc)) from None
        except AttributesError as exc:
            self.stats.failed["attributes"] += 1
            raise GRPCError(
                Code.INVALID_ARGUMENT,
                shorten(f"request could not be processed due to invalid attributes: {exc}"),
            ) from None
        except DispatchError as exc:
            self.stats.failed["dispatch"] += 1
            log.info("Check failed: %s", exc)
            raise GRPCError(
                Code.INTERNAL, shorten(f"performing check operation failed: {exc}")
            ) from None
        if not outcome.status.ok:
            self.stats.denied += 1
        return CheckResponse(
            precondition=CheckResponsePreconditionResult(
                status=_status(outcome.status.code, outcome.status.message),
                valid_duration=outcome.valid_duration,
                valid_use_count=outcome.valid_use_count,
                referenced_attributes=encode_referenced(outcome.referenced, gwc),
                route_directive=_route_directive(outcome),
            ),
            quotas={
                name: CheckResponseQuotaResult(
                    valid_duration=quota.valid_duration,
                    granted_amount=quota.granted_amount,
                    status=_status(Code.OK),  # Mixer never fills it: exhaustion is amount 0
                    referenced_attributes=encode_referenced(quota.referenced, gwc),
                )
                for name, quota in outcome.quotas.items()
            },
        )

    # -- Report ----------------------------------------------------------------------------
    @staticmethod
    def _plan_report(dispatcher: Dispatcher, request: ReportRequest) -> ReportPlan:
        bags = decode_report(request, strict=False, manifest=dispatcher.routing.manifest)
        return dispatcher.plan_report(bags)

    async def report(self, request: ReportRequest) -> ReportResponse:
        """Dispatch one Report batch (raises ``GRPCError`` with Mixer's status when it fails)."""
        self.stats.reports += 1
        self.stats.report_sets += len(request.attributes)
        dispatcher = self._dispatcher
        try:  # decoding checks the global word count
            loop = asyncio.get_running_loop()
            plan = await loop.run_in_executor(
                self._executor, self._plan_report, dispatcher, request
            )
            await dispatcher.run_report(plan)
        except GlobalWordCountError as exc:
            self.stats.failed["global_word_count"] += 1
            raise GRPCError(Code.INTERNAL, str(exc)) from None
        except AttributesError as exc:
            self.stats.failed["attributes"] += 1
            message = str(exc)
            if not message.startswith("request could not be processed"):
                message = f"request could not be processed due to invalid attributes: {message}"
            raise GRPCError(Code.UNKNOWN, shorten(message)) from None
        except DispatchError as exc:
            self.stats.failed["dispatch"] += 1
            log.info("Report failed: %s", exc)
            raise GRPCError(
                Code.UNKNOWN, shorten(f"performing report operation failed: {exc}")
            ) from None
        return ReportResponse()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Load the configuration, follow the store and serve gRPC on ``host:port`` (0: any
        free port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("MixerServer is already started")
        for message in (CheckRequest, CheckResponse, ReportRequest, ReportResponse):
            load_codec(message)  # pay the codec load here, not in the first peer's call
        await self.reload()
        self._unsubscribe = self.store.subscribe(self._on_change)
        sock = bind_tcp(host, port)
        server = create_server([MixerService(self)], self.grpc_settings)
        try:
            await server.start(sock=sock)
        except BaseException:
            sock.close()
            raise
        self._server = server
        self._port = bound_port(sock)
        log.info("Mixer listening on %s:%d", host, self._port)
        return self._port

    async def start_prometheus(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve the prometheus handlers' ``/metrics`` (and ``/debug/config``, the problems,
        as JSON) on ``host:port``; returns the bound port."""
        if self._monitoring is not None:
            raise RuntimeError("MixerServer's Prometheus endpoint is already started")
        monitoring = MonitoringHttpServer(
            {
                "/metrics": lambda: (CONTENT_TYPE, self.metrics_text()),
                "/debug/config": lambda: json_body(
                    {
                        "revision": self.routing.revision,
                        "rules": [rule.name for rule in self.routing.rules],
                        "handlers": sorted(self.handlers),
                        "problems": [str(problem) for problem in self.problems],
                        "stats": self.stats.as_dict(),
                    }
                ),
            }
        )
        bound = await monitoring.start(host, port)
        self._monitoring = monitoring
        return bound

    async def stop(self) -> None:
        """Stop serving, stop following the store and close every handler."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._reload_task is not None:
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload_task
            self._reload_task = None
        if self._monitoring is not None:
            await self._monitoring.close()
            self._monitoring = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task, handler in list(self._retiring.items()):
            task.cancel()
            await handler.close()
        for _, handler in self._built.values():
            await handler.close()
        self._built = {}
        self._dispatcher = Dispatcher(
            build_routing((), default_namespace=self.default_namespace), {}
        )
        self._executor.shutdown(wait=False)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mixer-core")
        self._reload_lock = asyncio.Lock()  # a restart may run on another event loop

    async def __aenter__(self) -> MixerServer:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
