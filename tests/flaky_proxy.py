"""A real TCP proxy on 127.0.0.1 in front of a real server, that a test can take down and bring back.

    with FlakyProxy(server.port) as proxy:       # clients use proxy.url / proxy.port
        proxy.down()                             # new connections are refused, open ones are cut
        proxy.up()                               # the same port answers again
        proxy.outage(2.0)                        # down now, up 2 s later
        proxy.cut_after(1_500_000, 2.0)          # once 1.5 MB went to clients: cut mid-stream, 2 s outage

Down means what a crashed server looks like from the client: connecting is refused (nothing listens on
the port) and every open connection is closed in the middle of whatever it was carrying. Bytes pass
through untouched otherwise (HTTP, websockets, anything over TCP). Threads only; nothing to install.
"""
from __future__ import annotations

import socket
import threading
from typing import List, Optional, Set

from tests.servers import free_port

__all__ = ['FlakyProxy']


class _Pair:
    """A client connection and its connection to the server; closed when both directions ended."""

    def __init__(self, client: socket.socket, upstream: socket.socket):
        self.client, self.upstream = client, upstream
        self.open_pipes = 2
        self.lock = threading.Lock()

    def shut(self) -> None:
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pipe threads; they close the sockets
            except OSError:
                pass

    def pipe_ended(self) -> None:
        with self.lock:
            self.open_pipes -= 1
            last = self.open_pipes == 0
        if last:
            self.client.close()
            self.upstream.close()


class FlakyProxy:
    def __init__(self, target_port: int, target_host: str = '127.0.0.1'):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.connections = 0    # accepted in all
        self.cut = 0            # closed by down() while open
        self.outages = 0        # times down() was called
        self.bytes_down = 0     # relayed from the server to clients
        self._lock = threading.Lock()
        self._pairs: Set[_Pair] = set()
        self._listener: Optional[socket.socket] = None
        self._acceptor: Optional[threading.Thread] = None
        self._timers: List[threading.Timer] = []
        self._trigger: Optional[tuple] = None  # (byte count, outage seconds)
        self._closed = False
        self.up()

    # ---------------------------------------------------------------------------------------- control

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def up(self) -> None:
        with self._lock:
            if self._closed or self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(('127.0.0.1', self.port))
            listener.listen(64)
            self._listener = listener
            self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True,
                                              name=f'flaky-proxy-{self.port}')
            self._acceptor.start()

    def down(self) -> None:
        """Refuse new connections and cut every open one."""
        with self._lock:
            listener, self._listener = self._listener, None
            acceptor, self._acceptor = self._acceptor, None
            pairs = list(self._pairs)
            self.outages += 1
            self.cut += len(pairs)
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); the port stops listening
            except OSError:
                pass
            if acceptor is not None and acceptor is not threading.current_thread():
                acceptor.join(5)
        for pair in pairs:
            pair.shut()

    def outage(self, seconds: float) -> None:
        """Down now, up again ``seconds`` later."""
        self.down()
        timer = threading.Timer(seconds, self.up)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def cut_after(self, nbytes: int, seconds: float) -> None:
        """Once ``nbytes`` more bytes went from the server to clients, cut the connection carrying the
        next byte right there (a response cut short) and everything else, for ``seconds``."""
        with self._lock:
            self._trigger = (self.bytes_down + nbytes, seconds)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._closed = True
        self.down()

    def __enter__(self) -> 'FlakyProxy':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- relaying

    def _accept(self, listener: socket.socket) -> None:
        try:
            while True:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return  # shut down by down()
                try:
                    upstream = socket.create_connection(self.target, timeout=10)
                    upstream.settimeout(None)
                except OSError:
                    client.close()
                    continue
                pair = _Pair(client, upstream)
                with self._lock:
                    if self._listener is not listener:  # went down meanwhile
                        client.close()
                        upstream.close()
                        return
                    self._pairs.add(pair)
                    self.connections += 1
                threading.Thread(target=self._pipe, args=(pair, client, upstream, False), daemon=True).start()
                threading.Thread(target=self._pipe, args=(pair, upstream, client, True), daemon=True).start()
        finally:
            listener.close()

    def _pipe(self, pair: _Pair, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                fire = None
                if downstream:
                    with self._lock:
                        if self._trigger is not None and self.bytes_down + len(data) >= self._trigger[0]:
                            data = data[:self._trigger[0] - self.bytes_down]
                            fire, self._trigger = self._trigger[1], None
                        self.bytes_down += len(data)
                sink.sendall(data)
                if fire is not None:
                    self.outage(fire)
                    break
        except OSError:
            pass
        finally:
            pair.shut()
            with self._lock:
                self._pairs.discard(pair)
            pair.pipe_ended()
