"""The local gateway under load and when its function misbehaves: a burst of connections is
held, not reset; more requests than the function may run at once wait for a slot and, when
none frees in time, get 503 service_unavailable in our shape with Retry-After; a function that
answers something other than a proxy response is a 502, as API Gateway answers. Each runs a
gateway of its own around a stand-in function (no stack needed)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imagegen_local.gateway import LocalApiGateway

ROUTE = "/v2/images/generate"
OK = {"statusCode": 202, "headers": {"Content-Type": "application/json"}, "body": '{"jobId": "j"}'}


@pytest.fixture
def gateway() -> Iterator[Any]:
    made: list[LocalApiGateway] = []

    def make(invoke: Any, **options: Any) -> LocalApiGateway:
        made.append(LocalApiGateway(invoke, port=0, **options))
        return made[-1]

    yield make
    for each in made:
        each.stop()


def assert_error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code


def test_a_request_that_finds_every_slot_busy_is_answered_503_with_retry_after(gateway):
    release, entered = threading.Event(), threading.Event()

    def slow(_: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return OK

    api = gateway(slow, max_concurrency=1, slot_wait_seconds=0.2)
    api.start()
    first: list[httpx.Response] = []
    holder = threading.Thread(target=lambda: first.append(httpx.post(api.url + ROUTE, json={}, timeout=30)))
    holder.start()
    assert entered.wait(30)

    try:
        second = httpx.post(api.url + ROUTE, json={}, timeout=30)
    finally:
        release.set()
        holder.join(30)

    assert_error(second, 503, "service_unavailable")
    assert second.headers["retry-after"] == "1"
    assert first[0].status_code == 202  # the one that held the slot was served
    assert httpx.post(api.url + ROUTE, json={}, timeout=30).status_code == 202  # the slot is free again


def test_a_burst_of_connections_waits_in_the_backlog_and_every_one_is_answered(gateway):
    api = gateway(lambda _: OK)
    host, port = api.server.server_address[:2]
    # The gateway is listening but not accepting yet: every connection waits in the backlog
    # (socketserver's default of 5 left the rest unanswered by the kernel).
    sockets = []
    try:
        for _ in range(300):
            sockets.append(socket.create_connection((host, port), timeout=2))
        for sock in sockets:
            sock.sendall(f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        api.start()
        statuses = []
        for sock in sockets:
            sock.settimeout(30)
            statuses.append(sock.recv(64).split(b" ", 2)[1])
    finally:
        for sock in sockets:
            sock.close()

    assert statuses == [b"202"] * 300


@pytest.mark.parametrize(
    "answer",
    [None, "a string", {"statusCode": "abc"}, {"statusCode": 99}, {"body": 5, "isBase64Encoded": True}],
)
def test_a_function_answer_that_is_not_a_proxy_response_is_a_502(gateway, answer):
    api = gateway(lambda _: answer)
    api.start()

    assert_error(httpx.post(api.url + ROUTE, json={}, timeout=30), 502, "internal_error")


def test_a_function_that_raises_is_a_502_and_frees_its_slot(gateway):
    def crash(_: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    api = gateway(crash, max_concurrency=1, slot_wait_seconds=5)
    api.start()

    for _ in range(3):  # a slot not given back would make the later ones 503
        answer = httpx.post(api.url + ROUTE, json={}, timeout=30)
        assert_error(answer, 502, "internal_error")
        assert "boom" not in json.dumps(answer.json())
