"""A TCP proxy on loopback that can cut a connection mid-stream (a server dropping us)."""

from __future__ import annotations

import contextlib
import socket
import threading


class DroppingProxy:
    """Forward to ``upstream``; cut the first ``drops`` connections after ``after_bytes`` bytes
    have come from the server."""

    def __init__(self, upstream_port: int, *, after_bytes: int, drops: int = 1) -> None:
        self.upstream_port, self.after_bytes, self.drops = upstream_port, after_bytes, drops
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.dropped = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            cut = self.after_bytes if self.connections <= self.drops else None
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, cut), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, cut: int | None) -> None:
        sent = 0
        try:
            while data := source.recv(16384):
                if cut is not None and sent + len(data) >= cut:
                    sink.sendall(data[: max(cut - sent, 0)])
                    self.dropped += 1
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


class SwitchableProxy:
    """A TCP proxy on loopback in front of PostgreSQL. ``down("refuse")`` drops every
    connection and closes new ones at once; ``down("hang")`` drops them and then accepts new
    ones without ever answering (only ``connect_timeout`` ends those); ``down("blackhole")``
    keeps open connections open but silent, and new ones are accepted, never answered (a
    database that hangs); ``up()`` forwards new connections again."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = "up"
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            with self.lock:
                self.sockets.append(client)
            if self.mode == "up":
                upstream = socket.create_connection(self.upstream)
                with self.lock:
                    self.sockets.append(upstream)
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if self.mode == "blackhole":
                    return  # swallowed: the peer waits for ever
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def down(self, mode: str) -> None:
        """``refuse``, ``hang`` or ``blackhole`` (see the class); ``up`` closes what is open."""
        self.mode = mode
        if mode == "blackhole":
            return  # open connections stay open, silent
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def up(self) -> None:
        """Forward again; the connections left from the outage are closed."""
        self.down("up")

    def close(self) -> None:
        self.down("refuse")
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
