"""Which hosts subscriptions (webhooks) may call, so stage authors can't make the server reach internal
services: URLs are checked when a stage is written (422), and again at delivery time after DNS resolution
(a name that resolves to a private address is refused, and the connection is pinned to the address that
was checked, so DNS rebinding can't swap it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..rules import Ruleset

logger = logging.getLogger("stageguard.subscriptions")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Names that resolve to the host itself or to a private network by convention.
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")


class WebhookNotAllowedError(ValueError):
    """A subscription URL points at a host the server's allowlist does not allow."""


def _ip(host: str) -> IPAddress | None:
    """The address of an IP literal, including legacy IPv4 forms (``2130706433``, ``127.1``, ``0x7f.1``)."""
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not host or any(c not in "0123456789abcdefx." for c in host.lower()):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible (::a.b.c.d)
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT IPv4-translated (RFC 2765)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # NAT64 well-known prefix (RFC 6052)
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # NAT64 local use (RFC 8215): any layout


def _embedded_v4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, compatible, translated, NAT64, 6to4, Teredo):
    a gateway or the host's stack may route them to that IPv4 address, so they must pass its checks."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = []
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _V4_TRANSLATED or address in _NAT64:
        found.append(low)
    if address in _V4_COMPATIBLE and int(address) > 1:
        found.append(low)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def _public(address: IPAddress) -> bool:
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address in _NAT64_LOCAL:
        return False
    return all(_public(v4) for v4 in _embedded_v4(address))


class Allowlist:
    """Allowlist entries: ``*`` (any public host), ``hooks.example.com``, ``*.example.com`` (its
    subdomains), IP addresses and CIDR blocks (``10.0.0.0/8``).

    ``*`` never allows private, loopback or link-local addresses; a host name, suffix or network listed
    explicitly does (the operator vouches for it).
    """

    def __init__(self, entries: Iterable[str] = ("*",)) -> None:
        self.entries = tuple(entries)
        self.any_public = False
        self.hosts: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[IPNetwork] = []
        for raw in self.entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            if entry == "*":
                self.any_public = True
            elif entry.startswith("*."):
                self.suffixes.append(entry[1:])
            else:
                try:
                    self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                except ValueError:
                    if "*" in entry or "/" in entry:
                        raise ValueError(f"invalid webhook allowlist entry {raw!r}") from None
                    self.hosts.add(entry)

    def __repr__(self) -> str:
        return f"Allowlist({list(self.entries)!r})"

    def _explicit(self, host: str) -> bool:
        return host in self.hosts or any(host.endswith(suffix) for suffix in self.suffixes)

    def _listed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks if network.version == address.version)

    def _address_refusal(self, address: IPAddress) -> str | None:
        if self._listed(address):
            return None
        embedded = _embedded_v4(address)
        if embedded and all(self._listed(v4) for v4 in embedded):
            return None
        if not _public(address):
            carried = f" (it carries the IPv4 address {', '.join(map(str, embedded))})" if embedded else ""
            return (
                f"{address} is a private, loopback or reserved address{carried} "
                "and no allowlist entry allows it"
            )
        if not self.any_public:
            return f"{address} is not in the webhook allowlist"
        return None

    def check_url(self, url: str) -> None:
        """Raise :class:`WebhookNotAllowedError` unless ``url`` may be called (before any DNS lookup)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise WebhookNotAllowedError(f"subscription URL {url!r} must use http or https")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise WebhookNotAllowedError(f"subscription URL {url!r} has no host")
        address = _ip(host)
        if address is not None:
            reason = self._address_refusal(address)
        elif self._explicit(host):
            reason = None
        elif not self.any_public:
            reason = f"host {host!r} is not in the webhook allowlist"
        elif host == "localhost" or host.endswith(_INTERNAL_SUFFIXES) or "." not in host:
            reason = f"host {host!r} is an internal name and no allowlist entry allows it"
        else:
            reason = None
        if reason:
            raise WebhookNotAllowedError(f"subscription URL {url!r} is not allowed: {reason}")

    def check_rulesets(self, rulesets: Sequence[Ruleset] | None) -> list[tuple[tuple[Any, ...], str]]:
        """The refused subscriptions of ``rulesets``, as (location, message) pairs."""
        problems = []
        for i, ruleset in enumerate(rulesets or ()):
            for j, subscription in enumerate(ruleset.action.subscriptions):
                try:
                    self.check_url(str(subscription.url))
                except WebhookNotAllowedError as exc:
                    problems.append(
                        (("prioritized_rulesets", i, "action", "subscriptions", j, "url"), str(exc))
                    )
        return problems

    def delivery_refusal(self, host: str, addresses: Sequence[str]) -> str | None:
        """Why delivering to ``host`` resolved to ``addresses`` is refused (``None``: allowed)."""
        host = host.rstrip(".").lower()
        if _ip(host) is None and self._explicit(host):
            return None
        if not addresses:
            return f"{host} did not resolve to any address"
        for raw in addresses:
            address = _ip(raw.split("%")[0])
            if address is None:
                return f"{host} resolved to an unusable address {raw!r}"
            reason = self._address_refusal(address)
            if reason:
                return f"{host} resolves to {reason}"
        return None


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AllowlistTransport(httpx.AsyncBaseTransport):
    """An httpx transport that re-checks every delivery after DNS resolution and pins the connection
    to the checked address (TLS still verifies the original host name). A refused delivery is answered
    with a local 403, so it is logged and not retried."""

    def __init__(
        self,
        allowlist: Allowlist,
        *,
        inner: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.allowlist = allowlist
        self._inner = inner or httpx.AsyncHTTPTransport()
        self._resolve = resolver or _getaddrinfo

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        literal = _ip(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = await self._resolve(host, port)
            except OSError as exc:
                raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
            if not addresses:
                raise httpx.ConnectError(f"{host} did not resolve to any address", request=request)
        reason = self.allowlist.delivery_refusal(host, addresses)
        if reason is not None:
            logger.warning(
                "subscription delivery to %s blocked by the webhook allowlist: %s", request.url, reason
            )
            return httpx.Response(
                403, request=request, headers={"x-stageguard-blocked": "allowlist"}, text=reason
            )
        if literal is None:
            request.url = request.url.copy_with(host=addresses[0].split("%")[0])
            if request.url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
