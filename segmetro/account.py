"""Reading the Metronome account (read-only): billable metrics, customers, usage, event search.

Same base URL and token as ``/v1/ingest``; every page of a list is read (``limit`` 100,
``next_page`` cursor). Answers are judged by upload's one policy table: a refused token or a
wrong URL ends the run (exit 3), 408/429/5xx are retried a few times, then exit 3. Event search
is "heavily rate limited" at Metronome: it is paced under ``search_rate`` requests a second.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import httpx
import orjson

from segmetro.billing import Account, Customers, Metric
from segmetro.network import certificate_message, httpx_options, untrusted_certificate
from segmetro.status import ExitStatus, SegmetroError
from segmetro.upload import (Verdict, UploadSettings, misrouted_message, retry_after,
                             server_message, verdict)

PAGE = 100
SEARCH_CHUNK = 25  # transaction ids per search request


class AccountError(SegmetroError):
    status = ExitStatus.ABORTED


class AccountClient:
    def __init__(self, settings: UploadSettings, search_rate: float = 1.0, retries: int = 4):
        self.settings = settings
        self.search_rate = search_rate
        self.retries = retries
        self.requests: list[tuple[str, str, Any]] = []  # (method, url, json body): for tests
        self._client = httpx.Client(
            base_url=settings.base_url, **httpx_options(settings.base_url),
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            headers={"Authorization": f"Bearer {settings.token}",
                     "User-Agent": "segmetro (read-only account check)"})
        self._last_search = 0.0

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "AccountClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, params: dict | None = None,
              body: Any = None) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(
                    method, path, params=params,
                    content=orjson.dumps(body) if body is not None else None,
                    headers={"Content-Type": "application/json"} if body is not None else None)
            except httpx.TransportError as error:
                untrusted = untrusted_certificate(error)
                if untrusted is not None:  # no retry will change it
                    raise AccountError(certificate_message(self.settings.base_url,
                                                           untrusted)) from None
                if attempt == self.retries:
                    raise AccountError(f"Metronome unreachable at {self.settings.base_url}: "
                                       f"{type(error).__name__}") from None
                time.sleep(min(8.0, 0.5 * 2 ** attempt))
                continue
            meaning = verdict(response.status_code)
            if meaning is Verdict.ACKNOWLEDGED:
                return response.json()
            if meaning is Verdict.REFUSED:
                raise AccountError(f"Metronome refused the API token (HTTP "
                                   f"{response.status_code}) reading {path}")
            if meaning is Verdict.MISROUTED:
                raise AccountError(misrouted_message(self.settings, response.status_code,
                                                     response).replace(self.settings.url,
                                                                       str(response.url)))
            if meaning is Verdict.RETRY and attempt < self.retries:
                time.sleep(retry_after(response) or min(8.0, 0.5 * 2 ** attempt))
                continue
            raise AccountError(f"{path}: Metronome answered HTTP {response.status_code}: "
                               f"{server_message(response)}")
        raise AccountError(f"{path}: no answer")  # pragma: no cover

    def _pages(self, path: str, params: dict | None = None) -> Iterator[dict]:
        cursor = None
        while True:
            query = {"limit": PAGE, **(params or {})}
            if cursor:
                query["next_page"] = cursor
            self.requests.append(("GET", path, query))
            page = self._call("GET", path, params=query)
            yield from page.get("data") or ()
            cursor = page.get("next_page")
            if not cursor:
                return

    def account(self) -> Account:
        metrics = [Metric.from_api(m) for m in self._pages("/v1/billable-metrics")]
        customers = list(self._pages("/v1/customers"))
        customers += list(self._pages("/v1/customers", {"only_archived": "true"}))
        return Account(metrics, Customers.from_api(customers))

    def usage(self, starting_on: str, ending_before: str, customer_ids: list[str],
              metric_ids: list[str]) -> list[dict]:
        body = {"starting_on": starting_on, "ending_before": ending_before,
                "window_size": "day", "customer_ids": customer_ids,
                "billable_metrics": [{"id": metric_id} for metric_id in metric_ids]}
        rows, cursor = [], None
        while True:
            params = {"next_page": cursor} if cursor else None
            self.requests.append(("POST", "/v1/usage", body))
            page = self._call("POST", "/v1/usage", params=params, body=body)
            rows.extend(page.get("data") or ())
            cursor = page.get("next_page")
            if not cursor:
                return rows

    def search(self, transaction_ids: list[str]) -> list[dict]:
        found = []
        for start in range(0, len(transaction_ids), SEARCH_CHUNK):
            if self.search_rate > 0:
                wait = self._last_search + 1 / self.search_rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            self._last_search = time.monotonic()
            body = {"transactionIds": transaction_ids[start:start + SEARCH_CHUNK]}
            self.requests.append(("POST", "/v1/events/search", body))
            found.extend(self._call("POST", "/v1/events/search", body=body))
        return found
