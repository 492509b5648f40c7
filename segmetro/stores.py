"""Objects in S3 and GCS as inputs, read where they live (``s3://``, ``gs://``).

Through fsspec's s3fs and gcsfs, installed as extras (``segmetro[s3]``, ``segmetro[gcs]``).
Credentials come from each SDK's own chain (AWS environment, profile, instance or pod role; Google
application default credentials) and never pass through segmetro. The endpoint overrides the SDKs
honour are honoured (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; ``STORAGE_EMULATOR_HOST``,
which as in Google's SDK means anonymous access), and so are the proxy and CA bundle settings of
``network.py``. ``--anonymous`` reads public buckets without credentials.

Listing is done by segmetro, one "directory" (delimiter listing) at a time, so that Segment's day
folders outside a ``--since`` window are never listed (see ``sources.DayFolders``). An object is
known by its URL, ETag (S3) or generation (GCS) and size: the checkpoint needs no second read.

``Prefetcher`` fetches the objects ahead of the reader, ``PREFETCH_WORKERS`` at a time, holding
at most ``PREFETCH_BUDGET`` bytes; an object over ``WHOLE_MAX`` is streamed in its turn instead of
held whole. With a reader process, the parent fetches and feeds the bytes to the reader over a
pipe (``feed_objects``, ``FedObjects``).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import BinaryIO, Iterable

from segmetro.files import write_all
from segmetro.network import ca_bundle, certificate_message, untrusted_certificate
from segmetro.redact import register
from segmetro.status import ConfigError, ExitStatus, InternalError, SegmetroError

SCHEMES = {"s3": "s3", "gs": "gcs", "gcs": "gcs"}  # URL scheme -> the extra that reads it
PREFETCH_WORKERS = 8
PREFETCH_BUDGET = 64 << 20  # bytes of fetched objects held at once
WHOLE_MAX = 16 << 20  # larger objects are streamed, not fetched whole
STREAM_BLOCK = 8 << 20


class StoreRefused(SegmetroError):
    """The store refused the credentials, or cannot be reached (exit 3)."""

    status = ExitStatus.ABORTED


@dataclass(frozen=True)
class StoreOptions:
    anonymous: bool = False


_options = StoreOptions()
_filesystems: dict = {}  # (pid, protocol) -> filesystem: a forked reader makes its own
_lock = threading.Lock()


def configure(anonymous: bool = False) -> None:
    global _options
    _options = StoreOptions(anonymous)
    _filesystems.clear()


def is_remote(spec: str) -> bool:
    scheme, sep, _ = spec.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def split(url: str) -> tuple[str, str]:
    """(protocol, "bucket/key") of an object URL."""
    scheme, _, rest = url.partition("://")
    return SCHEMES[scheme.lower()], rest


def filesystem(protocol: str):
    key = (os.getpid(), protocol)
    with _lock:
        fs = _filesystems.get(key)
        if fs is None:
            fs = _filesystems[key] = _make(protocol)
        return fs


def _missing_extra(protocol: str, error: ImportError) -> ConfigError:
    scheme = "s3://" if protocol == "s3" else "gs://"
    return ConfigError(f"{scheme} inputs need the {protocol} extra: "
                       f"pip install 'segmetro[{protocol}]' ({error})")


def _make(protocol: str):
    if protocol == "s3":
        try:
            import s3fs
        except ImportError as error:
            raise _missing_extra("s3", error) from None
        client: dict = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            client["endpoint_url"] = endpoint
        bundle = ca_bundle()
        if bundle:
            client["verify"] = bundle
        for secret in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):  # never printed
            register(os.environ.get(secret, ""))
        return s3fs.S3FileSystem(anon=_options.anonymous, client_kwargs=client,
                                 skip_instance_cache=True, use_listings_cache=False)
    bundle = ca_bundle()
    if bundle and "aiohttp" not in sys.modules:
        # aiohttp makes its TLS context when imported, from OpenSSL's default paths: so that
        # REQUESTS_CA_BUNDLE reaches it as it reaches Metronome's clients and botocore, it is
        # named to OpenSSL first (s3:// and gs:// in one run: the first import decides)
        os.environ["SSL_CERT_FILE"] = bundle
    try:
        from gcsfs.core import GCSFileSystem  # the JSON API; not the gRPC experiments
    except ImportError as error:
        raise _missing_extra("gcs", error) from None
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "") not in ("", "default")
    token = "anon" if _options.anonymous or emulator else "google_default"
    try:
        return GCSFileSystem(token=token, skip_instance_cache=True,
                             session_kwargs={"trust_env": True})
    except Exception as error:  # noqa: BLE001 - google.auth's DefaultCredentialsError and kin
        raise ConfigError("gs:// inputs: no Google credentials found (application default "
                          "credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud auth "
                          "application-default login, or the instance's service account); "
                          f"--anonymous reads a public bucket ({type(error).__name__})") from None


def translate(error: BaseException, url: str) -> SegmetroError:
    """A store's exception as segmetro's: what to do, with the URL, never a traceback."""
    name = type(error).__name__
    text = str(error)
    status = getattr(error, "code", None) or getattr(error, "status", None)
    if isinstance(error, SegmetroError):
        return error
    untrusted = untrusted_certificate(error)
    if untrusted is not None or name in ("SSLError", "ClientConnectorCertificateError"):
        return StoreRefused(certificate_message(url, untrusted or _first_line(text)))
    if isinstance(error, FileNotFoundError):
        return ConfigError(f"{url}: {_not_found(text)}")
    if name == "NoCredentialsError":
        return ConfigError(f"{url}: no AWS credentials found (environment, profile, instance or "
                           "pod role); --anonymous reads a public bucket")
    forbidden = isinstance(error, OSError) and text.startswith("Forbidden")  # gcsfs's 403
    if isinstance(error, PermissionError) or status in (401, 403) or forbidden:
        return StoreRefused(f"{url}: access refused by the store ({_first_line(text)}): check "
                            "the credentials and the bucket's permissions")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
                "ServerDisconnectedError") or isinstance(error, (ConnectionError, TimeoutError)):
        return StoreRefused(f"{url}: the store cannot be reached ({name}: "
                            f"{_first_line(text)})")
    return InternalError(f"{url}: the store failed: {name}: {_first_line(text)}")


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def _not_found(text: str) -> str:
    lowered = text.lower()
    if "bucket" in lowered and ("not exist" in lowered or "not found" in lowered):
        return "no such bucket"
    return "no such object or prefix"


@dataclass(slots=True)
class Listed:
    """One entry of a listing: a "directory" (common prefix) or an object."""

    url: str
    name: str  # the last part of the path
    is_dir: bool
    size: int = 0
    version: str | None = None  # ETag or generation


def _listed(protocol: str, entry: dict) -> Listed:
    path = entry["name"].rstrip("/")
    scheme = "s3" if protocol == "s3" else "gs"
    version = entry.get("ETag") or entry.get("generation")
    return Listed(f"{scheme}://{path}", path.rsplit("/", 1)[-1], entry.get("type") == "directory",
                  int(entry.get("size") or 0), str(version).strip('"') if version else None)


def list_dir(url: str) -> list[Listed]:
    """The entries directly under a prefix, sorted by name."""
    protocol, path = split(url)
    fs = filesystem(protocol)
    try:
        entries = fs.ls(path.rstrip("/"), detail=True, refresh=True)
    except Exception as error:  # noqa: BLE001 - translated
        raise translate(error, url) from None
    own = path.rstrip("/")
    return sorted((_listed(protocol, e) for e in entries if e["name"].rstrip("/") != own),
                  key=lambda item: item.name)


def stat(url: str) -> Listed:
    """An object, or a prefix with objects under it (``is_dir``)."""
    protocol, path = split(url)
    fs = filesystem(protocol)
    bucket = path.split("/", 1)[0]
    if not bucket:
        raise ConfigError(f"{url}: no bucket named")
    try:
        info = fs.info(path.rstrip("/") or bucket)
    except FileNotFoundError as error:
        if "/" in path.strip("/"):
            try:
                fs.ls(bucket, detail=False)
            except FileNotFoundError:
                raise ConfigError(f"{url}: no such bucket") from None
            except Exception as inner:  # noqa: BLE001 - translated
                raise translate(inner, url) from None
            raise ConfigError(f"{url}: no such object or prefix") from None
        raise translate(error, url) from None
    except Exception as error:  # noqa: BLE001 - translated
        raise translate(error, url) from None
    return _listed(protocol, {**info, "name": path.rstrip("/") or bucket})


def _fetch(url: str) -> bytes:
    protocol, path = split(url)
    try:
        if protocol == "s3":  # one GET: s3fs would first HEAD the object to split its download
            return filesystem(protocol).cat_file(path, max_concurrency=1)
        return filesystem(protocol).cat_file(path)
    except Exception as error:  # noqa: BLE001 - translated
        raise _vanished(error, url) from None


def _vanished(error: BaseException, url: str) -> SegmetroError:
    from segmetro.sources import InputVanished

    if isinstance(error, FileNotFoundError):
        return InputVanished(f"{url}: the object is gone (it was listed when the run started)")
    found = translate(error, url)
    if isinstance(found, InternalError):
        return InputVanished(f"{found} (reading an object listed when the run started)")
    return found


class _Stream(io.RawIOBase):
    """An object too large to hold whole, read in blocks; errors become segmetro's."""

    def __init__(self, url: str):
        protocol, path = split(url)
        self.url = url
        try:
            self._handle = filesystem(protocol).open(path, "rb", block_size=STREAM_BLOCK,
                                                     cache_type="readahead")
        except Exception as error:  # noqa: BLE001 - translated
            raise _vanished(error, url) from None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._handle.read(size)
        except Exception as error:  # noqa: BLE001 - translated
            raise _vanished(error, self.url) from None

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._handle.close()
        finally:
            super().close()


class Prefetcher:
    """Objects fetched ahead of the reader, in order, with bounded memory."""

    def __init__(self, files: Iterable):
        self._queue = deque(f for f in files if is_remote(f.path))
        self._workers = PREFETCH_WORKERS
        self._budget = PREFETCH_BUDGET
        self._whole_max = WHOLE_MAX
        self._pending: dict[str, tuple] = {}  # url -> (future or None, bytes held)
        self._held = 0
        self._pool = None  # a ThreadPoolExecutor, once there is something to fetch

    def _fill(self) -> None:
        while self._queue:
            source = self._queue[0]
            size = source.size or 0
            if size > self._whole_max:  # streamed in its turn: nothing to hold now
                self._pending[source.path] = (None, 0)
                self._queue.popleft()
                continue
            fetching = sum(1 for future, _ in self._pending.values() if future is not None)
            if fetching >= 2 * self._workers or \
                    (self._held and self._held + size > self._budget):
                return
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self._workers, "segmetro-fetch")
            self._pending[source.path] = (self._pool.submit(_fetch, source.path), size)
            self._held += size
            self._queue.popleft()

    def open(self, source) -> BinaryIO:
        """The object's bytes as a stream; raises segmetro's errors."""
        if source.path not in self._pending:
            self._fill()
        future, size = self._pending.pop(source.path, (None, 0))
        if future is None:
            self._fill()
            return io.BufferedReader(_Stream(source.path), STREAM_BLOCK)
        try:
            data = future.result()
        finally:
            self._held -= size
            self._fill()
        return io.BytesIO(data)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._pending.clear()
        self._queue.clear()


# --- objects fetched by the parent, read by the reader process -------------------------------
# The reader process (reader.py) parses and maps on its core; fetching an object costs a few ms
# of Python in the SDK, which would take the reader's GIL. So with a reader process, the parent
# (which has time to spare) fetches, and streams each object's bytes over a pipe in the order
# the reader opens them: frames of a 4-byte length and that many bytes, an empty frame ending
# an object, and FEED_ERROR followed by a pickled (exit status, message) ending the feed.

_FRAME = struct.Struct("<I")
FEED_ERROR = 0xFFFFFFFF
_FEED_CHUNK = 1 << 20


def feed_objects(files: Iterable, fd: int) -> threading.Thread:
    """Start a thread writing the objects among ``files`` to ``fd`` (closed when done)."""
    objects = [source for source in files if is_remote(source.path)]

    def run() -> None:
        fetcher = Prefetcher(objects)
        try:
            with os.fdopen(fd, "wb", buffering=0) as pipe:
                write = pipe.write  # a frame cut short would garble every one after it
                try:
                    for source in objects:
                        with fetcher.open(source) as stream:
                            while chunk := stream.read(_FEED_CHUNK):
                                write_all(write, _FRAME.pack(len(chunk)) + chunk)
                        write_all(write, _FRAME.pack(0))
                except SegmetroError as error:
                    write_all(write, _FRAME.pack(FEED_ERROR) +
                              pickle.dumps((int(error.status), str(error))))
                except Exception as error:  # noqa: BLE001 - the reader reports it (exit 70)
                    write_all(write, _FRAME.pack(FEED_ERROR) + pickle.dumps(
                        (int(ExitStatus.INTERNAL), f"fetching objects: {type(error).__name__}: "
                                                   f"{error}")))
        except OSError:  # the reader ended (it stops early on --limit, or it was stopped)
            pass
        finally:
            fetcher.close()

    thread = threading.Thread(target=run, name="segmetro-feed", daemon=True)
    thread.start()
    return thread


class FedObjects:
    """The reader process's side: ``open`` gives the next object's bytes from the feed."""

    def __init__(self, fd: int):
        self._pipe = os.fdopen(fd, "rb", buffering=1 << 20)

    def open(self, source) -> BinaryIO:
        return io.BufferedReader(_FedObject(self._pipe, source.path), _FEED_CHUNK)

    def close(self) -> None:
        self._pipe.close()


class _FedObject(io.RawIOBase):
    def __init__(self, pipe: BinaryIO, url: str):
        self._pipe = pipe
        self._url = url
        self._left = 0  # bytes of the current frame not yet read
        self._ended = False

    def readable(self) -> bool:
        return True

    def _exactly(self, size: int) -> bytes:
        data = self._pipe.read(size)
        if len(data) != size:
            raise InternalError(f"{self._url}: the object feed ended early")
        return data

    def readinto(self, buffer) -> int:
        while not self._left:
            if self._ended:
                return 0
            (size,) = _FRAME.unpack(self._exactly(_FRAME.size))
            if size == FEED_ERROR:
                status, message = pickle.loads(self._pipe.read())
                self._ended = True
                raise SegmetroError(message, ExitStatus(status))
            if size == 0:
                self._ended = True
                return 0
            self._left = size
        data = self._pipe.read(min(len(buffer), self._left))
        if not data:
            raise InternalError(f"{self._url}: the object feed ended early")
        self._left -= len(data)
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        """Skip what was not read, so that the next object starts at its own first frame."""
        try:
            while not self.closed and not self._ended:
                if self._left:
                    data = self._pipe.read(min(self._left, _FEED_CHUNK))
                    if not data:
                        break
                    self._left -= len(data)
                else:
                    self.readinto(bytearray(_FEED_CHUNK))
        except (SegmetroError, OSError):
            pass
        finally:
            super().close()
