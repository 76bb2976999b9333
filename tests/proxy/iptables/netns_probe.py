"""Run inside a test network namespace (``ip netns exec NS python netns_probe.py ...``).

``serve NAME SPEC...`` listens on each ``tcp:PORT``/``udp:PORT``/``tproxy:PORT`` (TCP with
IP_TRANSPARENT) and answers every connection or datagram with one JSON line: which listener got
it (``NAME-tcp-PORT``) and, for TCP, the original destination the kernel recorded
(SO_ORIGINAL_DST) and the connection's local address. It prints ``ready`` once bound and runs until
its stdin closes.

``probe SPEC...`` tries each ``tcp:HOST:PORT`` or ``udp:HOST:PORT`` (``tcp@UID:...`` runs it as
that user) and prints one JSON list of the answers (``null`` when nothing answered).
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import sys
import threading

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h, at level SOL_IP
IP_TRANSPARENT = 19  # linux/in.h


def _original_dst(conn: socket.socket) -> str | None:
    try:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port = struct.unpack("!H", raw[2:4])[0]
    return f"{socket.inet_ntoa(raw[4:8])}:{port}"


def serve(name: str, specs: list[str]) -> None:
    selector = selectors.DefaultSelector()
    for spec in specs:
        proto, port = spec.split(":")
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if proto == "tproxy":  # what Envoy's TPROXY listener sets: accept any destination
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        sock.bind(("0.0.0.0", int(port)))
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
        selector.register(sock, selectors.EVENT_READ, f"{name}-{proto}-{port}")
    print("ready", flush=True)
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock.type == socket.SOCK_STREAM:
                conn, _ = sock.accept()
                with conn:
                    answer = {"listener": key.data, "original_dst": _original_dst(conn)}
                    host, port = conn.getsockname()[:2]
                    answer["local"] = f"{host}:{port}"
                    conn.sendall(json.dumps(answer).encode() + b"\n")
            else:
                _, peer = sock.recvfrom(2048)
                sock.sendto(json.dumps({"listener": key.data}).encode(), peer)


def _exit_when_stdin_closes() -> None:
    sys.stdin.read()
    os._exit(0)


def _try(spec: str) -> object:
    proto, host, port = spec.split(":")
    proto, _, uid = proto.partition("@")
    if uid:
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(read)
            os.setuid(int(uid))
            os.write(write, json.dumps(_try(f"{proto}:{host}:{port}")).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        os.waitpid(child, 0)
        return json.loads(data)
    try:
        if proto == "tcp":
            with socket.create_connection((host, int(port)), timeout=2) as conn:
                return json.loads(conn.makefile().readline())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1)
            sock.sendto(b"query", (host, int(port)))
            return json.loads(sock.recv(2048))
    except (OSError, ValueError):
        return None


def main() -> None:
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3:])
    else:
        print(json.dumps([_try(spec) for spec in sys.argv[2:]]))


if __name__ == "__main__":
    main()
