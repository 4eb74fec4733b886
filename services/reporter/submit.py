"""Send a signed invoice to its tax authority over HTTP and read what came back.

The authority's channel (fiscal/authority.py) says what to send and how to read the
answer; this module is only the transport, and a failure of the transport is a
transient answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import httpx
from prometheus_client import Histogram

from fiscal.authorities import UnknownAuthority
from fiscal.authority import Answer, Channel, Submission
from schemas.events import InvoiceSigned

CIS_SECONDS = Histogram(
    "fiscobridge_reporter_cis_request_seconds",
    "Time from sending a submission to the tax authority to having its answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


def submission_of(signed: InvoiceSigned) -> Submission:
    return Submission(signed.kind, signed.message_id, signed.protection_code,
                      signed.document.encode())


class Submitter:
    """Posts each submission on a client that has nothing else in flight, if there is one.

    The reporter gives it many small pools (`services.reporter.service.cis_clients`
    says why), and picking an idle one here costs O(1). With fewer clients than
    requests in flight, the least busy client takes the extra one and its own pool
    queues it. `channels`: the reporter's channel of each authority, by name.
    """

    def __init__(
        self, clients: Sequence[httpx.AsyncClient], channels: Mapping[str, Channel]
    ) -> None:
        if not clients:
            raise ValueError("the submitter needs at least one HTTP client")
        self.clients = list(clients)
        self.channels = dict(channels)
        self._in_flight = [0] * len(self.clients)
        # Last released first: its connection is the one most recently known alive,
        # and under light load the others may idle out rather than all being kept warm.
        self._idle = list(range(len(self.clients) - 1, -1, -1))
        # Parsed once each: httpx would otherwise parse the URL and headers per request.
        self._urls: dict[tuple[str, str], httpx.URL] = {}
        self._headers: dict[tuple[tuple[str, str], ...], httpx.Headers] = {}

    def _acquire(self) -> int:
        index = self._idle.pop() if self._idle else min(
            range(len(self.clients)), key=self._in_flight.__getitem__
        )
        self._in_flight[index] += 1
        return index

    def _release(self, index: int) -> None:
        self._in_flight[index] -= 1
        if not self._in_flight[index]:
            self._idle.append(index)

    def _url(self, endpoint: str, path: str) -> httpx.URL:
        url = self._urls.get((endpoint, path))
        if url is None:
            url = self._urls[endpoint, path] = httpx.URL(endpoint + path)
        return url

    def _headers_of(self, headers: tuple[tuple[str, str], ...]) -> httpx.Headers:
        parsed = self._headers.get(headers)
        if parsed is None:
            parsed = self._headers[headers] = httpx.Headers(list(headers))
        return parsed

    async def submit(self, signed: InvoiceSigned) -> Answer:
        channel = self.channels.get(signed.profile)
        if channel is None:
            raise UnknownAuthority(
                f"this reporter has no channel to the tax authority {signed.profile!r}"
                f" (it has: {', '.join(sorted(self.channels)) or 'none'})"
            )
        submission = submission_of(signed)
        request = channel.request(submission)
        url = self._url(channel.endpoint, request.path)
        headers = self._headers_of(request.headers)
        started = time.perf_counter()
        index = self._acquire()
        try:
            client = self.clients[index]
            # Timeouts are the client's own: build_request puts them on the request.
            response = await client.send(
                client.build_request(request.method, url, content=request.body, headers=headers)
            )
        except httpx.TimeoutException:
            return Answer.transient("timeout", "no answer from the tax authority in time")
        except httpx.TransportError as exc:
            return Answer.transient("connection", f"could not reach the tax authority: {exc!r}")
        finally:
            self._release(index)
            CIS_SECONDS.observe(time.perf_counter() - started)
        return channel.read(submission, response.status_code, response.content)
