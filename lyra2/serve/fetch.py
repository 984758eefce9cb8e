"""Image sources of a server request, resolved with limits and without server-side request forgery.

`image_url` may be an http(s) URL (fetched with a size cap, a total time limit and a bounded number of
redirects, every hop checked) or a data: URI. file:// URLs and paths are refused: a remote client must not read
the server's files. Hosts that resolve to loopback, link-local, private, multicast or reserved addresses are
refused unless the operator allows private addresses; the check happens in the resolver, so the address that is
checked is the address that is connected to (no DNS rebinding between check and connect)."""
import asyncio
import ipaddress
import socket
import urllib.parse

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver


class ImageSourceError(ValueError):
    """The image_url cannot be used (refused, unreachable, too large, not an image); the message says why."""


def address_allowed(ip, allow_private):
    ip = ipaddress.ip_address(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_private:
        return not ip.is_unspecified and not ip.is_multicast
    return ip.is_global and not (ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_multicast
                                 or ip.is_reserved or ip.is_unspecified)


class _GuardedResolver(AbstractResolver):
    def __init__(self, allow_private):
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(self, host, port=0, family=socket.AF_INET):
        infos = await self._inner.resolve(host, port, family)
        good = [i for i in infos if address_allowed(i["host"], self._allow_private)]
        if not good:  # not an OSError: aiohttp would fold that into a bare "cannot connect"
            raise ImageSourceError(f"image_url: {host} resolves only to addresses this server does not fetch "
                                   "from (loopback, link-local, private or reserved; the operator can allow private "
                                   "addresses with --allow-private-urls)")
        return good

    async def close(self):
        await self._inner.close()


def _check_url(url, allow_private):
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ImageSourceError(f"image_url: {url[:200]!r} is not an http(s) URL with a host")
    try:
        literal = ipaddress.ip_address(parsed.hostname)
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if not address_allowed(literal, allow_private):
        raise ImageSourceError(f"image_url: {parsed.hostname} is a loopback, link-local, private or reserved "
                               "address; this server does not fetch from those (the operator can allow private "
                               "addresses with --allow-private-urls)")


async def fetch_url(url, *, max_bytes, timeout_s, max_redirects, allow_private):
    """The body of an http(s) URL, or ImageSourceError."""
    connector = aiohttp.TCPConnector(resolver=_GuardedResolver(allow_private), use_dns_cache=False, limit=1)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
            for _ in range(max_redirects + 1):
                _check_url(url, allow_private)
                async with session.get(url, allow_redirects=False,
                                       headers={"User-Agent": "lyra2-serve image fetch"}) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise ImageSourceError(f"image_url: {url[:200]} redirects without a Location")
                        url = urllib.parse.urljoin(url, location)
                        continue
                    if response.status != 200:
                        raise ImageSourceError(f"image_url: {url[:200]} answered HTTP {response.status}")
                    if response.content_length is not None and response.content_length > max_bytes:
                        raise ImageSourceError(f"image_url: {url[:200]} is {response.content_length} bytes; "
                                               f"images over {max_bytes} bytes are refused")
                    chunks, total = [], 0
                    async for chunk in response.content.iter_chunked(1 << 16):
                        total += len(chunk)
                        if total > max_bytes:
                            raise ImageSourceError(f"image_url: {url[:200]} is over {max_bytes} bytes; "
                                                   "larger images are refused")
                        chunks.append(chunk)
                    return b"".join(chunks)
            raise ImageSourceError(f"image_url: more than {max_redirects} redirects")
    except ImageSourceError:
        raise
    except asyncio.TimeoutError:
        raise ImageSourceError(f"image_url: {url[:200]} did not answer within {timeout_s:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as e:
        raise ImageSourceError(f"image_url: cannot fetch {url[:200]} ({e})") from None
