"""The uploader's transport (httpx's interface over aiohttp's connections) against raw servers on
loopback: what reaches the server, what comes back, and each way a connection fails as the
httpx error the upload policy retries on."""

import asyncio
import gzip
import socket
import threading

import httpx
import pytest

from segmetro.transport import Transport

LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4)
TIMEOUT = httpx.Timeout(5.0, connect=2.0)


class RawServer:
    """Accepts connections on 127.0.0.1 and gives each to ``behave(connection, request)`` after
    reading one request head and its body (by Content-Length)."""

    def __init__(self, behave):
        self.behave = behave
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1/ingest"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(connection,), daemon=True).start()

    def _one(self, connection: socket.socket) -> None:
        with connection:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    more = connection.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, data = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(data) < length:
                    data += connection.recv(65536)
                request, data = head + b"\r\n\r\n" + data[:length], data[length:]
                self.requests.append(request)
                if not self.behave(connection, request):
                    return

    def close(self) -> None:
        self.sock.close()


def answer(status: bytes = b"200 OK", headers: bytes = b"", body: bytes = b""):
    def behave(connection, request):
        connection.sendall(b"HTTP/1.1 " + status + b"\r\n" + headers
                           + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        return True
    return behave


def post(url: str, body: bytes = b"[]", timeout: httpx.Timeout = TIMEOUT, count: int = 1):
    async def go():
        transport = Transport(limits=LIMITS, verify=False)
        try:
            responses = []
            for _ in range(count):
                request = httpx.Request("POST", url, content=body,
                                        headers={"Authorization": "Bearer t0k",
                                                 "Content-Type": "application/json"},
                                        extensions={"timeout": timeout.as_dict()})
                response = await transport.handle_async_request(request)
                await response.aread()
                responses.append(response)
            return responses
        finally:
            await transport.aclose()
    return asyncio.run(go())


@pytest.fixture
def server():
    made = []

    def start(behave):
        made.append(RawServer(behave))
        return made[-1]
    yield start
    for one in made:
        one.close()


def test_the_request_arrives_as_sent_and_the_answer_comes_back_whole(server):
    zipped = gzip.compress(b'{"message": "bad"}')
    raw = server(answer(b"400 Bad Request", b"Content-Encoding: gzip\r\nRetry-After: 3\r\n"
                        b"Set-Cookie: a=b\r\nContent-Type: application/json\r\n", zipped))
    first, second = post(raw.url, b'[{"transaction_id": "x"}]', count=2)
    assert first.status_code == 400 and first.headers["retry-after"] == "3"
    assert first.json() == {"message": "bad"}  # inflated once, by httpx
    request = raw.requests[0]
    assert request.startswith(b"POST /v1/ingest HTTP/1.1\r\n")
    assert b"Authorization: Bearer t0k\r\n" in request and b"Content-Length: 25\r\n" in request
    assert request.endswith(b'\r\n\r\n[{"transaction_id": "x"}]')
    assert b"Cookie" not in raw.requests[1]  # no cookies kept
    assert len(raw.requests) == 2  # over one kept-alive connection, nothing more sent


def test_a_redirect_is_returned_not_followed(server):
    raw = server(answer(b"302 Found", b"Location: /elsewhere\r\n"))
    (response,) = post(raw.url)
    assert response.status_code == 302 and len(raw.requests) == 1


def test_a_refused_connection_is_a_connect_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1/ingest"
    with pytest.raises(httpx.ConnectError):
        post(url)


def test_a_server_that_never_answers_is_a_read_timeout(server):
    raw = server(lambda connection, request: threading.Event().wait(5))
    with pytest.raises(httpx.ReadTimeout):
        post(raw.url, timeout=httpx.Timeout(0.3, connect=2.0))


@pytest.mark.parametrize("behave", [
    lambda connection, request: False,  # hangs up after reading the request
    lambda connection, request: connection.sendall(b"NOT HTTP\r\n\r\n"),
    lambda connection, request: connection.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\ncut short"),
], ids=["hang-up", "garbage", "short-body"])
def test_a_broken_answer_is_a_transport_error_the_upload_retries(server, behave):
    raw = server(behave)
    with pytest.raises(httpx.TransportError) as caught:
        post(raw.url, timeout=httpx.Timeout(2.0))
    assert isinstance(caught.value, (httpx.RemoteProtocolError, httpx.ReadError))


def test_a_send_to_a_server_that_never_answers_gives_up_naming_the_timeout(server, run,
                                                                           tmp_path):
    from conftest import SAMPLE, SAMPLE_NOW

    raw = server(lambda connection, request: threading.Event().wait(5))
    base = raw.url.removesuffix("/v1/ingest")
    result = run("send", str(SAMPLE), "--now", SAMPLE_NOW, "--api-token", "t0k", "--base-url",
                 base, "--timeout", "0.3", "--max-retries", "1", "--max-backoff", "0.1",
                 "--state", str(tmp_path / "state"))
    assert result.exit_code == 3
    assert "Metronome unreachable: ReadTimeout after 1 retries" in result.stderr


def test_a_server_that_stops_reading_ends_the_request_in_time():
    """aiohttp has no write timeout: the transport's whole-request limit stands in for it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:  # listens, never reads
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/ingest"
        with pytest.raises(httpx.TimeoutException):
            post(url, body=b"x" * (64 << 20), timeout=httpx.Timeout(0.3))

