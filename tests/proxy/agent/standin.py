"""A stand-in for the Envoy binary (none is installed): the tests write it as an executable.

It records how it was started and what it was asked (one JSON line per event in
``$STANDIN_LOG``), serves the admin endpoints the agent uses on the bootstrap's admin port
(``GET /stats``, ``POST /drain_listeners``), exits 0 on SIGTERM, and exits with
``$STANDIN_EXIT_CODE`` after ``$STANDIN_EXIT_AFTER`` seconds when those are set.
"""

from __future__ import annotations

import pathlib
import stat
import sys

SCRIPT = r"""
import http.server, json, os, signal, socket, sys, threading, time

argv = sys.argv[1:]
def flag(name):
    return argv[argv.index(name) + 1] if name in argv else None

epoch = int(flag("--restart-epoch") or 0)
config_path = flag("-c")
config = open(config_path).read()
log_path = os.environ["STANDIN_LOG"]
lock = threading.Lock()

def record(event, **fields):
    with lock, open(log_path, "a") as out:
        out.write(json.dumps({"event": event, "epoch": epoch, "pid": os.getpid(), **fields}) + "\n")

record("start", argv=argv, config=config)
port = json.loads(config)["admin"]["address"]["socket_address"]["port_value"]

class Admin(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def _answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith("/stats"):
            self._answer(200, b"server.state: 0\nlistener_manager.workers_started: 1\n")
        else:
            self._answer(404, b"")
    def do_POST(self):
        if self.path.startswith("/drain_listeners"):
            record("drain", query=self.path.partition("?")[2])
            self._answer(200, b"OK\n")
        else:
            self._answer(404, b"")

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def server_bind(self):
        # two epochs share the admin port during a hot restart, as Envoy's do
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

server = Server(("127.0.0.1", port), Admin)
threading.Thread(target=server.serve_forever, daemon=True).start()

def on_term(*_):
    record("sigterm")
    os._exit(0)

signal.signal(signal.SIGTERM, on_term)
exit_after = os.environ.get("STANDIN_EXIT_AFTER")
if exit_after:
    time.sleep(float(exit_after))
    record("exit", code=int(os.environ.get("STANDIN_EXIT_CODE", "0")))
    os._exit(int(os.environ.get("STANDIN_EXIT_CODE", "0")))
while True:
    time.sleep(3600)
"""


def write_standin(directory: pathlib.Path) -> pathlib.Path:
    """Write the stand-in as an executable in ``directory``; its path."""
    path = directory / "envoy"
    path.write_text(f"#!{sys.executable}\n" + SCRIPT)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def events(log: pathlib.Path) -> list[dict[str, object]]:
    """The stand-ins' recorded events so far."""
    import json

    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def kill_standins(log: pathlib.Path) -> None:
    """SIGKILL every stand-in the log says was started (a test's safety net)."""
    import contextlib
    import os
    import signal

    for event in events(log):
        if event["event"] == "start":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(str(event["pid"])), signal.SIGKILL)


__all__ = ["events", "kill_standins", "write_standin"]
