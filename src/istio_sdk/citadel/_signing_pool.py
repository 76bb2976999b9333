"""Signing in worker processes, fed straight from the server's event loop.

``cryptography`` holds the GIL while it signs, so threads add no throughput; processes do. Each
worker rebuilds the CA once from PEM, then answers requests over its own socket pair. The event
loop writes requests and reads answers with asyncio streams: no helper threads and no
per-call executor bookkeeping, and requests pipeline (while a worker signs, the next CSRs
already wait in its socket).

A frame on the socket is a 4-byte big-endian length and a pickle. Pickle is fine here: both
ends are this program, joined by an anonymous socket pair.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import pickle
import signal
import socket
import struct
from typing import TYPE_CHECKING

from istio_sdk.citadel._identity import Identity
from istio_sdk.citadel.ca import CaOptions, CertificateAuthority, IssuedCertificate
from istio_sdk.citadel.errors import CitadelError

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

_HEADER = struct.Struct("!I")
_READY_ID = -1  # the request id of the frame a worker sends once its CA is loaded
_PICKLE = pickle.HIGHEST_PROTOCOL
_EXIT_GRACE_SECONDS = 5.0


class SigningWorkerError(CitadelError):
    """A signing worker process is gone (it exited or the pool was closed)."""


def _frame(value: object) -> bytes:
    data = pickle.dumps(value, _PICKLE)
    return _HEADER.pack(len(data)) + data


def _worker_main(sock: socket.socket, state: tuple[bytes, str, str, str, CaOptions]) -> None:
    """Worker process: sign each request read from ``sock`` until the server closes it."""
    # Ctrl-C reaches the whole process group; the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    key_pem, cert_pem, intermediates_pem, root_pem, options = state
    ca = CertificateAuthority.from_pem(key_pem, cert_pem, root_pem, intermediates_pem, options)
    with sock, sock.makefile("rb") as reader:
        sock.sendall(_frame((_READY_ID, True, None)))
        while True:
            header = reader.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return  # the server closed its end
            body = reader.read(_HEADER.unpack(header)[0])
            request_id, csr, identity, ttl_seconds = pickle.loads(body)
            try:
                answer = _frame((request_id, True, ca.sign_csr(csr, identity, ttl_seconds)))
            except Exception as exc:  # every failure goes back to the caller
                try:
                    answer = _frame((request_id, False, exc))
                except Exception:  # an exception that does not pickle
                    failure = SigningWorkerError(f"signing failed: {type(exc).__name__}")
                    answer = _frame((request_id, False, failure))
            sock.sendall(answer)


class _Worker:
    """One worker process and the server's end of its socket pair."""

    def __init__(self, process: BaseProcess, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.pending: dict[int, asyncio.Future[IssuedCertificate]] = {}
        self.gone = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._ready: asyncio.Future[None] | None = None

    async def writer(self) -> asyncio.StreamWriter:
        """The stream to the worker, opened on first use inside the running loop."""
        if self._writer is None:
            async with self._connect_lock:
                if self._writer is None:
                    reader, writer = await asyncio.open_unix_connection(sock=self.sock)
                    self._ready = asyncio.get_running_loop().create_future()
                    self._reader_task = asyncio.create_task(
                        self._read_answers(reader), name="citadel-signing-answers"
                    )
                    self._writer = writer
        return self._writer

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(_HEADER.size)
                body = await reader.readexactly(_HEADER.unpack(header)[0])
                request_id, ok, value = pickle.loads(body)
                if request_id == _READY_ID:
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_result(None)
                    continue
                future = self.pending.get(request_id)
                if future is None or future.done():
                    continue  # its caller went away (cancelled)
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.mark_gone()

    def mark_gone(self) -> None:
        """The worker cannot answer any more: fail what it holds, take nothing new.

        Called by whichever side sees the worker's end first: the answer reader (end of
        file) or a sender (broken pipe). Either way the next request skips this worker at
        once instead of depending on which task the event loop happens to run first.
        """
        self.gone = True
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                SigningWorkerError("the signing worker process exited while starting")
            )
        for future in self.pending.values():
            if not future.done():
                future.set_exception(SigningWorkerError("the signing worker process exited"))

    async def wait_ready(self) -> None:
        """Return once the worker has loaded its CA; raise if it exits first."""
        await self.writer()
        assert self._ready is not None
        await asyncio.shield(self._ready)

    def close(self) -> None:
        """Close the server's end: the worker reads end-of-file and exits."""
        self.gone = True
        if self._writer is not None:
            self._writer.close()
        else:
            self.sock.close()


class SigningPool:
    """Worker processes (started with ``spawn``) that sign with a copy of a CA.

    :meth:`sign_csr` is a coroutine; it sends the request to the worker with the fewest
    requests in flight. Call :meth:`close` (or ``await`` :meth:`aclose`) when done.
    """

    def __init__(self, ca: CertificateAuthority, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"a signing pool needs at least one process, got {processes}")
        context = multiprocessing.get_context("spawn")
        state = ca.worker_state()
        self._ids = itertools.count()
        self._closing = False
        self._workers: list[_Worker] = []
        for _ in range(processes):
            ours, theirs = socket.socketpair()
            # Daemonic: workers never outlive the server process.
            process = context.Process(
                target=_worker_main, args=(theirs, state), name="citadel-signer", daemon=True
            )
            process.start()
            theirs.close()
            self._workers.append(_Worker(process, ours))

    @property
    def processes(self) -> int:
        """How many worker processes the pool started."""
        return len(self._workers)

    async def wait_ready(self) -> None:
        """Return once every worker has started and loaded its CA (requests sent earlier
        simply wait for it); raises :class:`SigningWorkerError` if a worker exits first."""
        await asyncio.gather(*(w.wait_ready() for w in self._workers))

    async def sign_csr(
        self, csr_pem: str | bytes, identity: Identity, ttl_seconds: int = 0
    ) -> IssuedCertificate:
        """:meth:`CertificateAuthority.sign_csr` in a worker process (same errors)."""
        if self._closing:
            raise SigningWorkerError("the signing pool is closed")
        live = [w for w in self._workers if not w.gone]
        if not live:
            raise SigningWorkerError("every signing worker process has exited")
        worker = min(live, key=lambda w: len(w.pending))
        request_id = next(self._ids)
        future: asyncio.Future[IssuedCertificate] = asyncio.get_running_loop().create_future()
        worker.pending[request_id] = future
        try:
            writer = await worker.writer()
            try:
                writer.write(_frame((request_id, csr_pem, identity, ttl_seconds)))
                await writer.drain()
            except ConnectionError as exc:
                future.cancel()  # this caller gets the error below, not through the future
                worker.mark_gone()
                raise SigningWorkerError("the signing worker process exited") from exc
            return await future
        finally:
            del worker.pending[request_id]
            if self._closing and not worker.pending:
                worker.close()

    def close(self) -> None:
        """Take no more requests; each worker exits once its requests in flight are answered."""
        self._closing = True
        for worker in self._workers:
            if not worker.pending:
                worker.close()

    async def aclose(self) -> None:
        """:meth:`close`, then wait for the workers to exit (a worker still running after
        a few seconds is terminated)."""
        self.close()
        try:
            async with asyncio.timeout(_EXIT_GRACE_SECONDS):
                await asyncio.gather(*(_exited(w.process) for w in self._workers))
        except TimeoutError:
            pass
        for worker in self._workers:
            if worker.process.is_alive():
                worker.process.terminate()
            worker.process.join(1.0)


async def _exited(process: BaseProcess) -> None:
    """Return once ``process`` has exited (its sentinel becomes readable)."""
    if not process.is_alive():
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def mark_done() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(process.sentinel, mark_done)
    try:
        await done
    finally:
        loop.remove_reader(process.sentinel)
