"""SSRF guard for every URL we fetch or hand on for somebody else.

A Lambda's credentials sit in its environment and its Runtime API listens on 127.0.0.1, so a
URL is checked after DNS resolution against loopback, private, link-local (169.254.169.254),
reserved and multicast ranges, IPv4-mapped IPv6 included. `safe_stream` then connects to the
address it checked (pinning it against DNS rebinding) and re-checks every redirect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urljoin, urlsplit

import httpx

from imagegen.errors import UnsafeUrl

MAX_REDIRECTS = 3
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _is_public(address: IpAddress, allow_loopback: bool) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
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
    """Resolve `url`'s host and return the address to connect to, or raise UnsafeUrl."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl(f"only http(s) URLs with a host are allowed: {url[:200]}")
    if parts.username or parts.password:
        raise UnsafeUrl("URLs with credentials are not allowed")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"cannot resolve host {parts.hostname!r}") from exc
    # Strip an IPv6 zone ("fe80::1%eth0"): ip_address refuses it, and the zone is not the check.
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    unsafe = [a for a in addresses if not _is_public(a, allow_loopback)]
    if unsafe or not addresses:
        raise UnsafeUrl(f"URL host {parts.hostname!r} resolves to a non-public address")
    return addresses[0]


def check_urls(urls: list[str], allow_loopback: bool = False) -> None:
    for url in urls:
        check_url(url, allow_loopback)


@contextmanager
def safe_stream(client: httpx.Client, url: str, allow_loopback: bool = False) -> Iterator[httpx.Response]:
    """GET `url` as a stream, connecting only to checked addresses, following redirects by hand."""
    for _ in range(MAX_REDIRECTS + 1):
        address = check_url(url, allow_loopback)
        parts = urlsplit(url)
        host = f"[{address}]" if address.version == 6 else str(address)
        netloc = f"{host}:{parts.port}" if parts.port else host
        pinned = parts._replace(netloc=netloc).geturl()
        request = client.build_request(
            "GET",
            pinned,
            headers={"Host": parts.netloc.rsplit("@", 1)[-1]},
            extensions={"sni_hostname": parts.hostname},
        )
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
