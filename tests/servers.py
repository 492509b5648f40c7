"""Real servers on loopback that a test starts itself: redis-server, moto (S3), a GCS emulator."""

import socket
import subprocess
import sys
import time
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def loopback_server(command: list[str], port: int, env: dict | None = None, cwd=None,
                    timeout: float = 30.0):
    """Start ``command`` (which listens on 127.0.0.1:``port``), wait until it accepts
    connections, and stop it afterwards."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not start on port {port}") from None
                time.sleep(0.05)
        yield process
    finally:
        process.kill()
        process.wait()


def moto_command(port: int) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def gcs_command(port: int) -> list[str]:
    return [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
            "--port", str(port), "--in-memory"]
