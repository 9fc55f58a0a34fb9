"""The fetch guard: which network addresses the collector may connect to.

Feed URLs, redirects and article links come from outside; without a guard a
hostile feed could make digest request ``http://169.254.169.254/`` (cloud
metadata) or a service on the loopback interface. The check happens where the
connection is made, on the addresses the host name actually resolves to, so
every spelling of an address (``2130706433``, ``0x7f.1``, ``[::ffff:127.0.0.1]``)
and every redirect hop is judged the same way, and a DNS answer cannot change
between the check and the connection: we connect to the address we checked.
TLS still uses the host name for SNI and certificate checks, because httpcore
starts TLS on the stream we return with the origin's host name.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import select
import socket
import ssl
import typing
from collections.abc import Iterable

import httpcore
import httpx

from ..errors import ConfigError

__all__ = [
    "GuardedBackend",
    "GuardedTransport",
    "Refused",
    "check_address",
    "parse_allow_list",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# NAT64's well-known prefix embeds an IPv4 address in the low 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Refused(Exception):
    """The guard refused a URL or an address; the message is the per-source reason."""


def parse_allow_list(entries: Iterable[str]) -> tuple[Network, ...]:
    """``[collect] allow_private`` as networks; a single address is a /32 or /128."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"[collect] allow_private: {entry!r} is not an IP address or network",
                hint='write addresses or networks, e.g. "127.0.0.1" or "10.0.0.0/8"',
            ) from None
    return tuple(networks)


def _embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for, if it stands for one."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _kind(ip: IPAddress) -> str:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    return "non-public"


def check_address(ip: IPAddress, allowed: tuple[Network, ...], host: str = "") -> None:
    """Raise ``Refused`` unless ``ip`` is public or explicitly allowed."""
    real = _embedded_ipv4(ip)
    if any(real.version == net.version and real in net for net in allowed):
        return
    # is_global is false for private, loopback, link-local (metadata services),
    # shared (100.64/10), documentation and reserved ranges alike.
    if real.is_global and not real.is_multicast:
        return
    shown = f"{host} resolves to" if host and host != str(ip) else "address is"
    raise Refused(
        f"refused: {shown} {_kind(real)} address {real} "
        f"(list it in [collect] allow_private to allow it)"
    )


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _root_cause(exc: BaseException) -> str:
    pending: list[BaseException] = [exc]
    while pending:
        seen = pending.pop()
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, BaseExceptionGroup):
            pending.extend(seen.exceptions)
        pending.extend(e for e in (seen.__cause__, seen.__context__) if e is not None)
    return " ".join(str(exc).split()) or type(exc).__name__


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves, checks, then connects to the checked IP."""

    def __init__(
        self, allowed: tuple[Network, ...], inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._allowed = allowed
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        # Every address must pass: a name that resolves to one public and one
        # private address must not get a second chance at the private one.
        for ip in addresses:
            check_address(ip, self._allowed, host)
        error: Exception | None = None
        for ip in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
                return _Stream(stream, stream.get_extra_info("socket"))
            except httpcore.ConnectError as exc:
                # Name the root cause now: httpcore's pool may re-raise this error in
                # another task, where its chain of causes no longer tells why.
                error = httpcore.ConnectError(_root_cause(exc))
        assert error is not None
        raise error

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        literal = literal_address(host)
        if literal is not None:
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise Refused("refused: unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    """A connection whose "is it still alive?" check costs one system call.

    httpcore asks every idle connection in the pool whether it was closed each
    time it hands out a request; anyio answers by building a dict of socket
    attributes (a ``getpeername`` call included) every time. With tens of
    connections over hundreds of requests that was most of the collector's CPU.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream, raw: socket.socket | None) -> None:
        self._inner = inner
        self._socket = raw

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _Stream(tls, self._socket)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable" and self._socket is not None:
            # Readable while idle means the server closed it (or sent junk): not reusable.
            if self._socket.fileno() < 0:
                return True
            return bool(select.select([self._socket], [], [], 0)[0])
        return self._inner.get_extra_info(info)


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """The verifying TLS context, built once per process.

    Loading the system's certificate store costs about 0.15 s of CPU: once per
    collect run (twice, with the pool httpx builds and we replace) it was a tenth
    of a whole run's CPU. A context is safe to share between connections.
    """
    return httpx.create_ssl_context()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, HTTP/1.1 with keep-alive, whose connections go through the guard.

    httpx does not take a network backend as an argument, so the connection pool
    it builds is replaced by an identical one with ``GuardedBackend``; the tests
    that connect to refused addresses fail if this ever stops taking effect.
    """

    def __init__(
        self,
        allowed: tuple[Network, ...],
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        context = ssl_context or _default_ssl_context()
        super().__init__(verify=context, limits=limits, trust_env=False, http1=True, http2=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(allowed),
        )
