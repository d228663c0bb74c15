"""Where a tenant's webhook may point: an http(s) URL whose every address is public, unless the
operator allows private ones (`T2V_WEBHOOK_PRIVATE_TARGETS`: allowed on the embedded default,
refused in cluster mode).

A webhook makes t2v POST wherever a tenant says; inside a cluster that could be the Kubernetes
API, the database or a cloud metadata service. So a URL is checked when it is submitted and again
when each attempt is sent, on the addresses DNS gives at that moment, and the attempt connects to
the address that passed (the Host header and the TLS server name stay the URL's), so a name that
resolves differently between the check and the connection (DNS rebinding) cannot move it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from core.errors import InvalidParam

MAX_URL = 2048
# RFC 3986 characters, and percent signs only as %XX escapes: what the schema's `uri` format allows.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$")
# The schema of the field in every request body that has one: empty (or null in JSON) means none.
_DESCRIPTION = ("POSTed the object (Standard Webhooks signature) when it ends; http(s) only, and in cluster mode "
                "only to public addresses. Empty: no webhook.")
_URL = {"type": "string", "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]", "maxLength": MAX_URL}
FORM_SCHEMA = {"anyOf": [_URL, {"type": "string", "maxLength": 0}], "description": _DESCRIPTION}
JSON_SCHEMA = {"anyOf": [_URL, {"type": "string", "maxLength": 0}, {"type": "null"}], "description": _DESCRIPTION}


class TargetRefused(ValueError):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def blocked(address: str) -> bool:
    """Anything but a global unicast address: loopback, private, link-local, shared (CGNAT), reserved,
    unspecified, multicast; an IPv4 address inside IPv6 (::ffff:a.b.c.d) is judged as itself."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_reserved


def _getaddrinfo(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise TargetRefused(f"host {host!r} does not resolve ({e})") from e
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_syntax(url: object) -> str | None:
    """None for no webhook (absent or empty), else the URL if it is an absolute http(s) URI with a host."""
    if url is None or url == "":
        return None
    parts = urlsplit(url) if isinstance(url, str) and len(url) <= MAX_URL and _URI.match(url) else None
    try:
        host, port = (parts.hostname, parts.port) if parts else (None, None)
    except ValueError:  # a port that is not a number, or out of range
        host = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not host:
        raise InvalidParam(f"webhook_url must be an http(s) URL with a host, of at most {MAX_URL} characters, "
                           f"got {str(url)[:100]!r}", param="webhook_url")
    return url


@dataclass
class Policy:
    """Whether webhooks may reach private addresses, and how names are resolved (injectable for tests)."""

    allow_private: bool
    resolve: Callable[[str, int], list[str]] = _getaddrinfo
    is_blocked: Callable[[str], bool] = field(default=blocked)

    def public_addresses(self, url: str) -> list[str]:
        """The URL host's addresses, all of them allowed, or TargetRefused naming the one that is not."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        try:
            addresses = [str(ipaddress.ip_address(host))]  # a literal address needs no lookup
        except ValueError:
            addresses = self.resolve(host, port)
        if not addresses:
            raise TargetRefused(f"host {host!r} does not resolve")
        for address in addresses:
            if self.is_blocked(address):
                raise TargetRefused(f"host {host!r} is {address}, a loopback, private or otherwise internal "
                                    "address, which webhooks may not reach here")
        return addresses

    def check(self, url: object) -> str | None:
        """Submission: the syntax, then (unless private targets are allowed) the addresses; 400 naming the field."""
        checked = check_syntax(url)
        if checked is None or self.allow_private:
            return checked
        try:
            self.public_addresses(checked)
        except TargetRefused as e:
            raise InvalidParam(f"webhook_url {checked[:100]!r}: {e} (T2V_WEBHOOK_PRIVATE_TARGETS)",
                               param="webhook_url") from e
        return checked

    def request(self, url: str) -> tuple[str, dict[str, str], dict]:
        """Send time: (URL to connect to, extra headers, httpx extensions). Checked again now, and
        pinned to the address that passed, so the connection goes where the check looked."""
        if self.allow_private:
            return url, {}, {}
        address = self.public_addresses(url)[0]
        target = httpx.URL(url)
        return (str(target.copy_with(host=address)), {"host": target.netloc.decode("ascii").rpartition("@")[2]},
                {"sni_hostname": target.host})
