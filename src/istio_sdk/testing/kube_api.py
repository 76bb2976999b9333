"""A small Kubernetes API server for tests, on 127.0.0.1 (HTTP, or HTTPS with a self-signed CA).

:class:`KubeApiServer` serves the REST paths of every Istio and Kubernetes kind the SDK knows
and ``coordination.k8s.io/v1`` Leases (``/api/v1/...`` and ``/apis/GROUP/VERSION/...``, with
and without ``namespaces/NS``): list (``labelSelector``, ``limit``/``continue``,
``resourceVersion``), watch (``?watch=1``, ``resourceVersion``, ``allowWatchBookmarks``,
``timeoutSeconds``; BOOKMARK events; a version too old is an ERROR event carrying a 410
Status), get, create (POST), update (PUT, 409 on a stale resourceVersion), delete, PUT of
``/status`` and server-side apply of ``/status`` (PATCH ``application/apply-patch+yaml`` with
``fieldManager`` and ``force``). The state and its rules live in
:mod:`istio_sdk.testing._kube_state`; this module is the HTTP/1.1 loop (``h11``) around it.

Tests drive it directly (:meth:`KubeApiServer.create`, :meth:`~KubeApiServer.update`,
:meth:`~KubeApiServer.delete`, :meth:`~KubeApiServer.apply_status`) and inject faults:
:meth:`~KubeApiServer.break_watches` (cut every open watch mid-stream),
:meth:`~KubeApiServer.restart` (close every connection and listen again on the same port),
:meth:`~KubeApiServer.fail_next` (answer the next requests with an error status, 500 by
default), :meth:`~KubeApiServer.send_raw` (write a line such as a malformed event into every
open watch), :meth:`~KubeApiServer.compact` (forget history: resuming gets 410) and
:meth:`~KubeApiServer.send_bookmarks`. :attr:`KubeApiServer.requests` records what was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import pathlib
import ssl
import tempfile
import urllib.parse
from collections.abc import Callable
from typing import Any

import attrs
import h11
import yaml

from istio_sdk._net import bind_tcp, bound_port
from istio_sdk.testing._kube_state import (
    ApiError,
    Change,
    KubeApiState,
    Obj,
    ResourceType,
    parse_selector,
    watch_event,
)

__all__ = ["ApiError", "KubeApiServer", "Request"]

_MAX_BODY = 4 * 2**20


@attrs.frozen
class Request:
    """One request the server received: method, path and query parameters."""

    method: str
    path: str
    query: dict[str, str]

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("1", "true")


@attrs.frozen
class _Route:
    rtype: ResourceType
    namespace: str | None
    name: str
    status: bool


@attrs.define
class _Fault:
    count: int
    code: int
    method: str | None
    path: str | None


class _Watch:
    """One open watch: its filter and the lines waiting to be written."""

    def __init__(self, route: _Route, selector: Callable[[dict[str, str]], bool], bookmarks: bool):
        self.route = route
        self.selector = selector
        self.bookmarks = bookmarks
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.writer: asyncio.StreamWriter | None = None

    def offer(self, change: Change) -> None:
        route = self.route
        if change.key[:2] != (route.rtype.group, route.rtype.plural):
            return
        event = watch_event(change, route.namespace, self.selector)
        if event is not None:
            self.queue.put_nowait(_line(event))


def _line(event: Obj) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


class KubeApiServer:
    """The test API server. ``await start()``, point a client at :attr:`url`, ``await stop()``.

    ``token`` (optional) is the bearer token every request must carry (401 otherwise);
    ``tls=True`` serves HTTPS with a certificate for 127.0.0.1 signed by a fresh CA
    (:attr:`ca_pem`). ``history`` bounds the changes kept for resuming watches;
    ``bookmark_interval`` (seconds, None: only on :meth:`send_bookmarks`) sends BOOKMARK
    events to watches that asked for them.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        tls: bool = False,
        history: int = 1000,
        bookmark_interval: float | None = None,
    ) -> None:
        self.state = KubeApiState(history=history)
        self.state.listeners.append(self._fan_out)
        self.token = token
        self.host = "127.0.0.1"
        self.port = 0
        self.bookmark_interval = bookmark_interval
        self.requests: list[Request] = []
        self.ca_pem: bytes | None = None
        self._ssl: ssl.SSLContext | None = None
        if tls:
            self._ssl, self.ca_pem = _self_signed(self.host)
        self._server: asyncio.Server | None = None
        self._watches: set[_Watch] = set()
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._faults: list[_Fault] = []
        self._bookmarker: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1 (``port`` 0: a free one, read back from :attr:`port`)."""
        sock = bind_tcp(self.host, port or self.port)
        self._server = await asyncio.start_server(self._serve, sock=sock, ssl=self._ssl)
        self.port = bound_port(self._server)
        if self.bookmark_interval is not None and self._bookmarker is None:
            self._bookmarker = asyncio.get_running_loop().create_task(self._bookmark_loop())

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._bookmarker is not None:
            self._bookmarker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bookmarker
            self._bookmarker = None
        await self._close_all()

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def restart(self, *, keep_history: bool = False) -> None:
        """Drop every connection and listen again on the same port, as a restarted API server.

        The objects survive (they live in etcd); without ``keep_history`` the watch history
        does not (a new watch cache), so a watch resuming from an old version gets 410.
        """
        await self._close_all()
        if not keep_history:
            self.state.compact()
        await self.start(self.port)

    async def __aenter__(self) -> KubeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def write_kubeconfig(self, path: str | pathlib.Path, *, namespace: str = "default") -> None:
        """Write a kubeconfig file for this server (its CA and token when it has them)."""
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_pem is not None:
            import base64

            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": cluster}],
            "users": [{"name": "test", "user": user}],
            "contexts": [
                {
                    "name": "test",
                    "context": {"cluster": "test", "user": "test", "namespace": namespace},
                }
            ],
            "current-context": "test",
        }
        pathlib.Path(path).write_text(yaml.safe_dump(config))

    # -- driving the state -----------------------------------------------------------------
    def create(self, obj: Obj) -> Obj:
        """Create an object (``apiVersion``, ``kind``, ``metadata.name`` and namespace)."""
        rtype = self.state.type_of(obj)
        return self.state.create(rtype, obj.get("metadata", {}).get("namespace", ""), obj)

    def update(self, obj: Obj) -> Obj:
        """Replace an object (its resourceVersion, when set, must be the stored one)."""
        rtype = self.state.type_of(obj)
        return self.state.update(
            rtype, obj.get("metadata", {}).get("namespace", ""), obj, status=False
        )

    def put(self, obj: Obj) -> Obj:
        """Create the object, or replace it whatever its stored resourceVersion."""
        rtype = self.state.type_of(obj)
        meta = obj.get("metadata", {})
        key = (rtype.group, rtype.plural, meta.get("namespace", ""), meta.get("name"))
        if key not in self.state.objects:
            return self.create(obj)
        body = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
        return self.update(body)

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj:
        rtype = self.state.type_of({"apiVersion": api_version, "kind": kind})
        return self.state.delete(rtype, namespace if rtype.namespaced else "", name)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None:
        rtype = self.state.type_of({"apiVersion": api_version, "kind": kind})
        return self.state.objects.get(
            (rtype.group, rtype.plural, namespace if rtype.namespaced else "", name)
        )

    def apply_status(self, obj: Obj, *, manager: str = "test", force: bool = False) -> Obj:
        rtype = self.state.type_of(obj)
        meta = obj["metadata"]
        return self.state.apply_status(
            rtype, meta.get("namespace", ""), meta["name"], obj, manager=manager, force=force
        )

    # -- faults ----------------------------------------------------------------------------
    def fail_next(
        self,
        count: int = 1,
        *,
        code: int = 500,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (matching ``method`` and a path containing
        ``path``, when given) with ``code`` and a Status body."""
        self._faults.append(_Fault(count, code, method, path))

    def break_watches(self) -> int:
        """Cut every open watch mid-stream (no terminating chunk); returns how many."""
        cut = 0
        for watch in list(self._watches):
            if watch.writer is not None:
                watch.writer.transport.abort()
                cut += 1
        return cut

    def send_raw(self, line: bytes) -> int:
        """Write ``line`` (a malformed event, say) into every open watch; returns how many."""
        for watch in self._watches:
            watch.queue.put_nowait(line if line.endswith(b"\n") else line + b"\n")
        return len(self._watches)

    def send_bookmarks(self) -> int:
        """Send a BOOKMARK at the current resourceVersion to every watch that allows them."""
        sent = 0
        for watch in self._watches:
            if watch.bookmarks:
                watch.queue.put_nowait(_line(self._bookmark(watch.route.rtype)))
                sent += 1
        return sent

    def compact(self) -> None:
        """Forget the watch history: resuming from any earlier version gets 410 Gone."""
        self.state.compact()

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def _bookmark(self, rtype: ResourceType) -> Obj:
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": rtype.kind,
                "apiVersion": rtype.api_version,
                "metadata": {"resourceVersion": str(self.state.revision)},
            },
        }

    async def _bookmark_loop(self) -> None:
        assert self.bookmark_interval is not None
        while True:
            await asyncio.sleep(self.bookmark_interval)
            self.send_bookmarks()

    def _fan_out(self, change: Change) -> None:
        for watch in list(self._watches):
            watch.offer(change)

    def _fault_for(self, method: str, path: str) -> int | None:
        for fault in self._faults:
            if (fault.method is None or fault.method == method) and (
                fault.path is None or fault.path in path
            ):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault.code
        return None

    # -- HTTP ------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await _read_request(conn, reader)
                if request is None:
                    return
                keep = await self._handle(conn, writer, reader, request, body)
                if not keep or conn.our_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # stop() or restart(): asyncio logs a cancelled handler
            return
        finally:
            self._connections.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()

    async def _handle(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
        request: h11.Request,
        body: bytes,
    ) -> bool:
        method = request.method.decode()
        target = urllib.parse.urlsplit(request.target.decode("latin-1"))
        query = dict(urllib.parse.parse_qsl(target.query))
        self.requests.append(Request(method, target.path, query))
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
        try:
            if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            code = self._fault_for(method, target.path)
            if code is not None:
                raise ApiError(code, "InternalError", f"injected failure ({code})")
            route = self._route(target.path)
            if method == "GET" and not route.name and query.get("watch") in ("1", "true"):
                await self._stream_watch(conn, writer, reader, route, query)
                return False
            status, obj = self._dispatch(method, route, query, headers, body)
        except ApiError as exc:
            status, obj = exc.code, exc.status()
        await _respond(conn, writer, status, obj)
        return True

    def _route(self, path: str) -> _Route:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if parts[:2] == ["api", "v1"]:
            api_version, rest = "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3 or (len(rest) == 3 and rest[2] != "status"):
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        rtype = self.state.type_at(api_version, rest[0])
        if not rtype.namespaced and namespace is not None:
            raise ApiError(404, "NotFound", f"{rtype.plural} is not namespaced")
        name = rest[1] if len(rest) > 1 else ""
        if name and rtype.namespaced and namespace is None:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        return _Route(rtype, namespace, name, len(rest) == 3)

    def _dispatch(
        self,
        method: str,
        route: _Route,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Obj]:
        state, rtype, ns = self.state, route.rtype, route.namespace or ""
        if method == "GET" and not route.name:
            limit = _int(query.get("limit", "0"), "limit")
            listed = state.list_objects(
                rtype,
                route.namespace,
                parse_selector(query.get("labelSelector", "")),
                limit=limit,
                token=query.get("continue", ""),
                resource_version=query.get("resourceVersion", ""),
            )
            return 200, listed
        if method == "GET":
            return 200, state.get(rtype, ns, route.name)
        if method == "POST" and not route.name:
            return 201, state.create(rtype, ns, _decode(body))
        if method == "PUT" and route.name:
            obj = _decode(body)
            if (obj.get("metadata") or {}).get("name") != route.name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
            return 200, state.update(rtype, ns, obj, status=route.status)
        if method == "DELETE" and route.name:
            return 200, state.delete(rtype, ns, route.name)
        if method == "PATCH" and route.name:
            kind = headers.get("content-type", "").split(";")[0].strip()
            if kind != "application/apply-patch+yaml":
                raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {kind!r}")
            if not route.status:
                raise ApiError(
                    405, "MethodNotAllowed", "this server applies only the status subresource"
                )
            force = query.get("force") in ("true", "1")
            return 200, state.apply_status(
                rtype,
                ns,
                route.name,
                _decode(body, yaml_ok=True),
                manager=query.get("fieldManager", ""),
                force=force,
            )
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed here")

    async def _stream_watch(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
        route: _Route,
        query: dict[str, str],
    ) -> None:
        selector = parse_selector(query.get("labelSelector", ""))
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = query.get("timeoutSeconds")
        watch = _Watch(route, selector, bookmarks)
        watch.writer = writer
        try:
            initial = self.state.watch_start(
                route.rtype, route.namespace, selector, query.get("resourceVersion", "")
            )
        except ApiError as exc:  # too old: 200, then one ERROR event, then the end
            if exc.code != 410:
                raise
            initial = None
            watch.queue.put_nowait(_line({"type": "ERROR", "object": exc.status()}))
            watch.queue.put_nowait(None)
        for event in initial or ():
            watch.queue.put_nowait(_line(event))
        if initial is not None:
            self._watches.add(watch)
        response = h11.Response(
            status_code=200,
            headers=[("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")],
        )
        writer.write(conn.send(response) or b"")
        closed = asyncio.ensure_future(reader.read(1))  # the client hanging up ends the watch
        deadline = None if timeout is None else _int(timeout, "timeoutSeconds")
        loop = asyncio.get_running_loop()
        ends = None if deadline is None else loop.time() + deadline
        get: asyncio.Future[bytes | None] | None = None
        try:
            while True:
                remaining = None if ends is None else max(0.0, ends - loop.time())
                get = asyncio.ensure_future(watch.queue.get())
                done, _ = await asyncio.wait(
                    {get, closed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if get not in done:
                    get.cancel()
                    if closed in done:
                        return
                    break  # timeoutSeconds: end the response cleanly
                line = get.result()
                if line is None:
                    break
                writer.write(conn.send(h11.Data(data=line)) or b"")
                await writer.drain()
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
        finally:
            closed.cancel()
            if get is not None:
                get.cancel()
            self._watches.discard(watch)


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event: Any = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            if not data and request is None:
                return None, b""
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > _MAX_BODY:
                raise h11.LocalProtocolError("request body too large")
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""


async def _respond(
    conn: h11.Connection, writer: asyncio.StreamWriter, status: int, obj: Obj
) -> None:
    payload = json.dumps(obj).encode()
    response = h11.Response(
        status_code=status,
        headers=[("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    writer.write((conn.send(response) or b"") + (conn.send(h11.Data(data=payload)) or b""))
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()


def _decode(body: bytes, *, yaml_ok: bool = False) -> Obj:
    try:
        value = json.loads(body)
    except ValueError:
        value = None
        if yaml_ok:
            with contextlib.suppress(yaml.YAMLError):
                value = yaml.safe_load(body)
        if value is None:
            raise ApiError(400, "BadRequest", "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "BadRequest", "the request body is not an object")
    return value


def _int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "BadRequest", f"invalid {name} {text!r}") from None
    if value < 0:
        raise ApiError(400, "BadRequest", f"{name} must not be negative")
    return value


def _self_signed(host: str) -> tuple[ssl.SSLContext, bytes]:
    """A server context for ``host`` whose certificate a fresh CA signed, and the CA's PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-api test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    folder = pathlib.Path(tempfile.mkdtemp(prefix="kube-api-"))
    (folder / "tls.crt").write_bytes(cert.public_bytes(pem))
    (folder / "tls.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "tls.crt", folder / "tls.key")
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
    return context, ca.public_bytes(pem)
