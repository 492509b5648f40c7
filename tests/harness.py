"""The emulator on a thread of the test process, for tests that drive the CLI in-process."""

import asyncio
import threading

from segmetro.emulator import EmulatorState, Limits, run_until_stopped


class BackgroundEmulator:
    """The emulator on a thread of its own with its own event loop (tests, benchmarks)."""

    def __init__(self, state: EmulatorState, host: str = "127.0.0.1", port: int = 0,
                 limits: Limits = Limits(), tls=None):
        self.state = state
        self.limits = limits
        self.tls = tls
        self.host = host
        self.port = port
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="emulator", daemon=True)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(port: int) -> None:
                self.port = port
                self._ready.set()

            await run_until_stopped(self.state, self.host, self.port, ready, self._stop,
                                    self.limits, self.tls)

        asyncio.run(main())

    def __enter__(self) -> "BackgroundEmulator":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the emulator did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
