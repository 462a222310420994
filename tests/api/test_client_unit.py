"""The client without a server: no answer becomes ServiceUnreachable; id prefixes page the list."""

from __future__ import annotations

import random
import socket
from typing import Any

import httpx
import pytest

from api.client import LayerwiseClient, ServiceUnreachable
from tests.utils.server import free_port


def test_refused_and_timed_out_connections_raise_service_unreachable():
    url = f"http://127.0.0.1:{free_port()}"
    with LayerwiseClient(url) as client, pytest.raises(ServiceUnreachable) as refused:
        client.get("abc")
    assert str(refused.value) == f"cannot reach the Layerwise service at {url}: connection refused"
    assert not refused.value.timed_out
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with LayerwiseClient(f"http://127.0.0.1:{port}", timeout=0.3) as client, \
                pytest.raises(ServiceUnreachable) as late:
            client.list()
    assert late.value.timed_out and "timed out answering (after 0.3 s)" in str(late.value)


def _paged_client(ids: list[str], calls: list[dict[str, Any]]) -> LayerwiseClient:
    """A client whose GET /v1/experiments pages through `ids`, newest first."""

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        calls.append(params)
        start, limit = int(params.get("cursor", 0)), int(params["limit"])
        page = ids[start:start + limit]
        more = start + limit < len(ids)
        return httpx.Response(200, json={"data": [{"id": i} for i in page], "count": len(page),
                                         "next_cursor": str(start + limit) if more else None})

    client = LayerwiseClient("http://layerwise.test")
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(answer))
    return client


def test_match_ids_pages_until_the_end_or_the_bound():
    ids = [f"{random.Random(n).getrandbits(128):032x}" for n in range(1200)]
    calls: list[dict[str, Any]] = []
    client = _paged_client(ids, calls)
    assert client.match_ids(ids[1100][:10]) == [ids[1100]]
    assert [int(c["limit"]) for c in calls] == [500, 500, 500]  # 500 + 500 + the last 200
    assert client.match_ids(ids[5]) == [ids[5]]  # a whole id is itself
    calls.clear()
    assert client.match_ids(ids[900][:10], scan=700) == []  # not among the newest 700
    assert [int(c["limit"]) for c in calls] == [500, 200]
    several = client.match_ids(ids[3][0])  # one hex digit: about 75 of them
    assert len(several) == 10 and all(i.startswith(ids[3][0]) for i in several)
