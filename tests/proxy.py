"""A small forward proxy on loopback, as a corporate one behaves: CONNECT tunnels for https://
and absolute-form requests for http://, counting what went through it (h11 parses HTTP/1.1);
and a TLS front for a plain server, as a store behind a private CA."""

import socket
import socketserver
import threading
from collections import Counter
from urllib.parse import urlsplit

import h11


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def relay(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until either side ends; then close both."""
    back = threading.Thread(target=_pump, args=(other, one), daemon=True)
    back.start()
    _pump(one, other)
    back.join(30)
    one.close()
    other.close()


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        proxy: ForwardProxy = self.server.proxy  # type: ignore[attr-defined]
        client = h11.Connection(h11.SERVER)
        try:
            while True:
                request = self._next(client, h11.Request)
                if request is None:
                    return
                target = request.target.decode()
                proxy.credentials.update(v.decode() for k, v in request.headers
                                         if k.lower() == b"proxy-authorization")
                if request.method == b"CONNECT":
                    proxy.count("CONNECT", target)
                    self._tunnel(client, target)
                    return
                proxy.count(request.method.decode(), target)
                body = b""
                while True:
                    event = self._next(client, (h11.Data, h11.EndOfMessage))
                    if event is None or isinstance(event, h11.EndOfMessage):
                        break
                    body += event.data
                self._forward(client, request, target, body)
                if client.our_state is h11.MUST_CLOSE:
                    return
                client.start_next_cycle()
        except (OSError, h11.ProtocolError):
            return

    def _next(self, connection: h11.Connection, wanted):
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = self.request.recv(65536)
                connection.receive_data(data)
                if not data and connection.their_state is not h11.DONE:
                    return None
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, wanted):
                return event

    def _tunnel(self, client: h11.Connection, target: str) -> None:
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        leftover = client.trailing_data[0]
        if leftover:
            upstream.sendall(leftover)
        relay(self.request, upstream)

    def _forward(self, client: h11.Connection, request: h11.Request, target: str,
                 body: bytes) -> None:
        parts = urlsplit(target)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [(k, v) for k, v in request.headers
                   if k.lower() not in (b"proxy-connection", b"proxy-authorization",
                                        b"connection", b"transfer-encoding", b"content-length")]
        headers += [(b"Connection", b"close"), (b"Content-Length", str(len(body)).encode())]
        upstream = h11.Connection(h11.CLIENT)
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=30) as sock:
            sock.sendall(upstream.send(h11.Request(method=request.method, target=path.encode(),
                                                   headers=headers)))
            sock.sendall(upstream.send(h11.Data(data=body)) if body else b"")
            sock.sendall(upstream.send(h11.EndOfMessage()))
            response, data = None, b""
            while True:
                event = upstream.next_event()
                if event is h11.NEED_DATA:
                    upstream.receive_data(sock.recv(65536))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    data += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
        headers = [(k, v) for k, v in response.headers
                   if k.lower() not in (b"connection", b"transfer-encoding", b"content-length")]
        headers.append((b"Content-Length", str(len(data)).encode()))
        self.request.sendall(client.send(h11.Response(status_code=response.status_code,
                                                      headers=headers, reason=response.reason)))
        if data:
            self.request.sendall(client.send(h11.Data(data=data)))
        self.request.sendall(client.send(h11.EndOfMessage()))


class ForwardProxy:
    """``with ForwardProxy() as proxy:`` listens on 127.0.0.1:``proxy.port``; ``proxy.seen``
    counts (method, host:port) of what went through, ``proxy.credentials`` what clients said
    who they are."""

    def __init__(self) -> None:
        self.seen: Counter = Counter()
        self.credentials: set[str] = set()  # the Proxy-Authorization values received
        self._lock = threading.Lock()
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def count(self, method: str, target: str) -> None:
        where = target if method == "CONNECT" else urlsplit(target).netloc
        with self._lock:
            self.seen[(method, where)] += 1

    def __enter__(self) -> "ForwardProxy":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class TlsFront:
    """TLS on a loopback port, relayed in plain to another: a server behind a private CA."""

    def __init__(self, certificate: tuple[str, str], target_port: int):
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]

        def serve() -> None:
            while True:
                try:
                    client, _ = self._listener.accept()
                except OSError:
                    return
                try:
                    secure = context.wrap_socket(client, server_side=True)
                except OSError:  # ssl.SSLError too: a client that refused our certificate
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", target_port))
                threading.Thread(target=relay, args=(secure, upstream), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self._listener.close()
