"""The SSRF guard decides on resolved addresses, pins them, and re-checks redirects."""

from __future__ import annotations

import socket

import httpx
import pytest

from imagegen.errors import UnsafeUrl
from imagegen.ssrf import check_url, safe_stream


@pytest.fixture
def resolves_to(monkeypatch):
    def set_address(*addresses: str) -> None:
        def fake_getaddrinfo(host, port, *args, **kwargs):
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses
            ]

        monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)

    return set_address


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
        "::1",
        "fc00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_non_public_addresses_are_refused(resolves_to, address):
    resolves_to(address)
    with pytest.raises(UnsafeUrl):
        check_url("https://images.example.com/a.png")


def test_one_private_address_among_public_ones_is_enough_to_refuse(resolves_to):
    resolves_to("93.184.216.34", "10.0.0.5")
    with pytest.raises(UnsafeUrl):
        check_url("https://images.example.com/a.png")


def test_public_addresses_pass_and_are_returned_for_pinning(resolves_to):
    resolves_to("93.184.216.34")
    assert str(check_url("https://images.example.com/a.png")) == "93.184.216.34"


def test_loopback_is_allowed_only_when_asked(resolves_to):
    resolves_to("127.0.0.1")
    assert str(check_url("http://localhost:8080/a.png", allow_loopback=True)) == "127.0.0.1"
    resolves_to("169.254.169.254")
    with pytest.raises(UnsafeUrl):
        check_url("http://metadata/", allow_loopback=True)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/a.png", "file:///etc/passwd", "https://user:pw@example.com/", "https:///nohost"],
)
def test_odd_urls_are_refused(url):
    with pytest.raises(UnsafeUrl):
        check_url(url)


def test_stream_connects_to_the_checked_address_and_rechecks_redirects(resolves_to):
    seen: list[tuple[str, str]] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers["host"]))
        if request.url.path == "/first":
            return httpx.Response(302, headers={"location": "https://evil.example.com/second"})
        return httpx.Response(200, content=b"img")

    resolves_to("93.184.216.34")
    client = httpx.Client(transport=httpx.MockTransport(upstream))
    with safe_stream(client, "https://cdn.example.com/first") as response:
        assert response.status_code == 302 or response.read() == b"img"
    assert seen[0] == ("https://93.184.216.34/first", "cdn.example.com")

    def redirect_to_metadata(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data/"})

    client = httpx.Client(transport=httpx.MockTransport(redirect_to_metadata))
    with pytest.raises(UnsafeUrl), safe_stream(client, "https://cdn.example.com/first"):
        pass
