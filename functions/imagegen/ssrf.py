"""SSRF guard for every URL we fetch or hand on for somebody else.

A Lambda's credentials sit in its environment and its Runtime API listens on 127.0.0.1, so a
URL is checked after DNS resolution against loopback, private, link-local (169.254.169.254),
reserved and multicast ranges. An IPv6 address that carries an IPv4 one (IPv4-mapped and
-compatible, 6to4, Teredo, NAT64) is refused when the IPv4 address inside is not public, whatever
the Python build's `ipaddress` thinks of the IPv6 range. `safe_stream` then connects to the
address it checked (pinning it against DNS rebinding) and re-checks every redirect.

Every refusal, a URL that does not parse included, is an UnsafeUrl: callers handle one error.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from imagegen.errors import UnsafeUrl

MAX_REDIRECTS = 3
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Prefixes whose last 32 bits are an IPv4 address. Python 3.11 calls 2002::/16 (6to4) and
# 64:ff9b::/96 (NAT64) global, so 2002:a9fe:a9fe::1 would reach 169.254.169.254 unchecked.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local use, never a public host
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291, deprecated; :: and ::1 are not IPv4


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address can lead to through a transition mechanism."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped:
        found.append(address.ipv4_mapped)
    if address.sixtofour:
        found.append(address.sixtofour)
    if address.teredo:
        found.extend(address.teredo)  # (server, client): both are contacted
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _is_public(address: IpAddress, allow_loopback: bool) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            # The socket talks IPv4 to the mapped address: judge that address alone.
            return _is_public(address.ipv4_mapped, allow_loopback)
        if address in _NAT64_LOCAL:
            return False
        # Loopback is allowed only as itself (the local stack), never through a tunnel.
        if not all(_is_public(inner, allow_loopback=False) for inner in embedded_ipv4(address)):
            return False
    if allow_loopback and address.is_loopback:
        return True
    return address.is_global and not (  # is_global also excludes shared space (100.64/10)
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def check_url(url: str, allow_loopback: bool = False) -> IpAddress:
    """Resolve `url`'s host and return the address to connect to, or raise UnsafeUrl (and
    nothing else, whatever the string)."""
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError as exc:  # a port out of range or not a number, an unclosed "[" (IPv6)
        raise UnsafeUrl(f"not a valid URL ({exc}): {url[:200]}") from exc
    if parts.scheme not in ("http", "https") or not hostname:
        raise UnsafeUrl(f"only http(s) URLs with a host are allowed: {url[:200]}")
    if parts.username or parts.password:
        raise UnsafeUrl("URLs with credentials are not allowed")
    try:
        infos = socket.getaddrinfo(hostname, port or 443, type=socket.SOCK_STREAM)
        # Strip an IPv6 zone ("fe80::1%eth0"): ip_address refuses it, and the zone is not the check.
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    except (OSError, ValueError) as exc:  # gaierror, a bad IDNA label (UnicodeError), a NUL byte
        raise UnsafeUrl(f"cannot resolve host {hostname[:200]!r}") from exc
    unsafe = [a for a in addresses if not _is_public(a, allow_loopback)]
    if unsafe or not addresses:
        raise UnsafeUrl(f"URL host {hostname[:200]!r} resolves to a non-public address")
    return addresses[0]


def check_urls(urls: list[str], allow_loopback: bool = False) -> None:
    for url in urls:
        check_url(url, allow_loopback)


def pinned_request(
    client: httpx.Client, method: str, url: str, allow_loopback: bool = False, **kwargs: Any
) -> httpx.Request:
    """A request for `url` that connects to the address check_url approved (so DNS cannot be
    rebound between check and connect), with the URL's own Host header and TLS server name."""
    address = check_url(url, allow_loopback)
    parts = urlsplit(url)
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parts.port}" if parts.port else host
    headers = {**kwargs.pop("headers", {}), "Host": parts.netloc.rsplit("@", 1)[-1]}
    return client.build_request(
        method,
        parts._replace(netloc=netloc).geturl(),
        headers=headers,
        extensions={"sni_hostname": parts.hostname},
        **kwargs,
    )


@contextmanager
def safe_stream(client: httpx.Client, url: str, allow_loopback: bool = False) -> Iterator[httpx.Response]:
    """GET `url` as a stream, connecting only to checked addresses, following redirects by hand."""
    for _ in range(MAX_REDIRECTS + 1):
        request = pinned_request(client, "GET", url, allow_loopback)
        response = client.send(request, stream=True, follow_redirects=False)
        if response.is_redirect and "location" in response.headers:
            url = urljoin(url, response.headers["location"])
            response.close()
            continue
        try:
            yield response
        finally:
            response.close()
        return
    raise UnsafeUrl(f"too many redirects fetching {url[:200]}")
