"""The SSRF guard decides on resolved addresses, pins them, and re-checks redirects."""

from __future__ import annotations

import ipaddress
import socket

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from imagegen.errors import UnsafeUrl
from imagegen.models import MAX_URL_CHARS, GptImageParams
from imagegen.ssrf import check_url, embedded_ipv4, safe_stream


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


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("2002:a9fe:a9fe::1", "169.254.169.254"),  # 6to4
        ("2002:7f00:1::", "127.0.0.1"),
        ("2002:a00:1:1::1", "10.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:5601:5601", "169.254.169.254"),  # Teredo (client XOR ffff)
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64, well-known prefix
        ("64:ff9b::10.0.0.1", "10.0.0.1"),
        ("::169.254.169.254", "169.254.169.254"),  # IPv4-compatible
        ("::ffff:10.0.0.1", "10.0.0.1"),  # IPv4-mapped
    ],
)
def test_ipv6_addresses_carrying_a_private_ipv4_are_refused(resolves_to, address, inner):
    # Python 3.11's ipaddress calls 2002::/16 global: the check must not rely on the build.
    assert ipaddress.IPv4Address(inner) in embedded_ipv4(ipaddress.IPv6Address(address))
    resolves_to(address)
    with pytest.raises(UnsafeUrl):
        check_url("https://images.example.com/a.png")


def test_ipv6_literal_of_6to4_metadata_is_refused_without_dns():
    with pytest.raises(UnsafeUrl):
        check_url("http://[2002:a9fe:a9fe::1]/latest/meta-data/")


def test_local_use_nat64_is_refused_and_plain_ipv6_embeds_nothing(resolves_to):
    resolves_to("64:ff9b:1::5db8:d822")
    with pytest.raises(UnsafeUrl):
        check_url("https://images.example.com/a.png")
    assert embedded_ipv4(ipaddress.IPv6Address("2606:2800:220:1:248:1893:25c8:1946")) == []
    assert embedded_ipv4(ipaddress.IPv6Address("::1")) == []  # loopback, not IPv4-compatible 0.0.0.1


def test_loopback_reached_through_a_tunnel_is_refused_even_when_loopback_is_allowed(resolves_to):
    resolves_to("2002:7f00:1::")
    with pytest.raises(UnsafeUrl):
        check_url("http://localhost:8080/a.png", allow_loopback=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://host:99999/x.png",
        "http://host:abc/x.png",
        "http://host:-1/x.png",
        "http://[::1/x.png",
        "http://" + "a" * 70 + ".example.com/x.png",  # an IDNA label longer than 63
        "http://exa\udcffmple.com/x.png",  # a lone surrogate
    ],
)
def test_malformed_urls_raise_our_error_not_value_error(url):
    with pytest.raises(UnsafeUrl):
        check_url(url)


def test_a_resolver_failing_in_any_way_is_our_error(monkeypatch):
    for error in (socket.gaierror(-2, "Name or service not known"), UnicodeError("label"), ValueError("nul")):

        def failing(*args, _error=error, **kwargs):
            raise _error

        monkeypatch.setattr(socket, "getaddrinfo", failing)
        with pytest.raises(UnsafeUrl):
            check_url("https://images.example.com/a.png")


_URL_PIECES = st.sampled_from(
    [
        "http://",
        "https://",
        "ftp://",
        "//",
        "[",
        "]",
        ":",
        "@",
        "%",
        "%25",
        "#",
        "?",
        "/",
        ".",
        "-1",
        "99999",
        "::1",
        "fe80::1%eth0",
        "2002:a9fe:a9fe::1",
        "127.0.0.1",
        "example.com",
        "user:pw",
        "\x00",
        "\udcff",
    ]
)
_URLISH = st.one_of(
    st.text(max_size=80), st.lists(st.one_of(_URL_PIECES, st.text(max_size=6)), max_size=12).map("".join)
)


@settings(max_examples=400, deadline=None, database=None)  # no .hypothesis/ in the tree
@given(url=_URLISH, resolved=st.lists(st.ip_addresses().map(str), max_size=3), resolver_fails=st.booleans())
def test_no_string_makes_check_url_raise_anything_but_our_error(url, resolved, resolver_fails):
    def fake_getaddrinfo(host, port, *args, **kwargs):
        if resolver_fails:
            raise socket.gaierror(-2, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in resolved
        ]

    original = socket.getaddrinfo
    socket.getaddrinfo = fake_getaddrinfo  # hypothesis runs many examples per test: no monkeypatch
    try:
        address = check_url(url)
    except UnsafeUrl:
        return
    finally:
        socket.getaddrinfo = original
    assert str(address) in resolved  # it passed: only to an address the resolver gave


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://host:99999/x.png", "not a valid URL"),
        ("http://host:abc/x.png", "not a valid URL"),
        ("http://host:-1/x.png", "not a valid URL"),
        ("http://[::1/x.png", "not a valid URL"),
        ("http://:80/x.png", "has no host"),
        ("https://example.com/" + "a" * MAX_URL_CHARS, f"longer than {MAX_URL_CHARS}"),
    ],
)
def test_the_request_model_refuses_unparsable_urls_with_a_field_message(url, says):
    with pytest.raises(ValidationError) as caught:
        GptImageParams(input_images=["https://example.com/fine.png", url])

    [error] = caught.value.errors()
    assert error["loc"] == ("input_images",)
    assert "input_images[1]" in error["msg"] and says in error["msg"]


def test_the_request_model_keeps_good_urls():
    url = "https://cdn.example.com:8443/a%20b.png?X-Amz-Signature=" + "f" * 64
    assert GptImageParams(input_images=[url]).input_images == [url]
