"""One policy for every URL Hirehook sends to: destinations, polling and ATS API base URLs.

A tenant's configuration names hosts that receive its credentials (an API token, a signed
event), and an admin API key can change them: a URL pointing at the machine's own network would
hand those to whatever listens there. So (docs/operations.md "Outbound URLs"):

* https only; http only to a loopback host (127.0.0.0/8, ::1, localhost) and only in the
  ``development`` and ``test`` environments, where the stand-in APIs and fakes listen;
* never a link-local or cloud metadata address (169.254.0.0/16, fe80::/10, fd00:ec2::254,
  100.100.100.200) or metadata host name, however the address is spelled (``2852039166``,
  ``0xa9fea9fe``, ``::ffff:169.254.169.254``);
* no ``user:password@`` in a URL (credentials belong in the connection's secrets);
* a host listed in ``HIREHOOK_OUTBOUND_ALLOW`` (names, addresses or networks, comma-separated)
  is exempt from all but the scheme being http(s).

Checked when a URL is loaded (tenants file) or changed (admin API), naming the field, and again
at send time by the shared HTTP client's transport (app/clients/http.py): each request's
URL, and every address its host name resolves to, which is the address then connected to (a
name re-pointed at a metadata address after the check is refused as well).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

if TYPE_CHECKING:
    from app.platform.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Link-local ranges and the cloud metadata services' addresses (AWS, GCP, Azure, Oracle,
# OpenStack: 169.254.169.254; AWS over IPv6: fd00:ec2::254; Alibaba: 100.100.100.200).
FORBIDDEN_NETWORKS: tuple[Network, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
)
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


class OutboundRefusedError(ValueError):
    """A URL or address the outbound policy refuses; the message names what and why."""


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def parse_address(host: str) -> Address | None:
    """``host`` as an IP address if it is one, in any spelling a resolver accepts (inet_aton's
    ``2852039166``, ``0xa9.0xfe.0xa9.0xfe``; IPv4-mapped IPv6 as its IPv4 address)."""
    host = host.strip("[]")
    try:
        address: Address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if not host or not all(c in "0123456789abcdefxABCDEFX." for c in host):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forbidden_address(address: Address) -> bool:
    """A link-local, metadata or unspecified address: never sent to (unless allow-listed)."""
    if address.is_unspecified or address.is_multicast:
        return True
    return any(address in network for network in FORBIDDEN_NETWORKS)


def _loopback(host: str, address: Address | None) -> bool:
    return host in LOOPBACK_NAMES or (address is not None and address.is_loopback)


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """What outbound URLs this process accepts."""

    # http:// to a loopback host (development and test only).
    loopback_http: bool = False
    # Host names (lower case) and networks exempt from the rules (HIREHOOK_OUTBOUND_ALLOW).
    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        """The policy of ``settings``' environment and ``HIREHOOK_OUTBOUND_ALLOW``."""
        return cls.of(
            loopback_http=settings.environment in ("development", "test"),
            allow=settings.outbound_allow_list,
        )

    @classmethod
    def of(cls, *, loopback_http: bool, allow: Iterable[str] = ()) -> OutboundPolicy:
        """A policy; ``allow`` entries are host names, addresses or networks (CIDR)."""
        hosts: set[str] = set()
        networks: list[Network] = []
        for entry in (_host(e) for e in allow):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(loopback_http, frozenset(hosts), tuple(networks))

    def allowed(self, host: str, address: Address | None = None) -> bool:
        """Whether ``host`` (or the address it is, or resolved to) is allow-listed."""
        if _host(host) in self.allow_hosts:
            return True
        address = address or parse_address(_host(host))
        return address is not None and any(address in n for n in self.allow_networks)

    def check(self, url: str, *, what: str | None = None) -> str:
        """``url`` if this policy accepts it; else :class:`OutboundRefusedError` naming
        ``what`` (the field, when the caller's error does not already) and the reason, never
        more of the URL than its scheme."""
        try:
            return self._check(url)
        except OutboundRefusedError as exc:
            if what is None:
                raise
            raise OutboundRefusedError(f"{what}: {exc}") from None

    def _check(self, url: str) -> str:
        try:
            parts = urlsplit(url.strip())
            host = _host(parts.hostname or "")
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            raise OutboundRefusedError("not a URL") from None
        if parts.scheme not in ("https", "http") or not host:
            raise OutboundRefusedError(
                "must be an https:// URL with a host (got scheme "
                f"{parts.scheme + '://' if parts.scheme else 'none'})"
            )
        if parts.username is not None or parts.password is not None:
            raise OutboundRefusedError("must not carry user:password@ (put credentials in secrets)")
        if self.allowed(host):
            return url
        address = parse_address(host)
        if host in METADATA_HOSTS or (address is not None and forbidden_address(address)):
            raise OutboundRefusedError(
                "a link-local or cloud metadata address is never called "
                "(list it in HIREHOOK_OUTBOUND_ALLOW if it must be)"
            )
        if parts.scheme == "http":
            if not _loopback(host, address):
                raise OutboundRefusedError(
                    "must be an https:// URL (http:// only to loopback, in "
                    "development and tests, or to a host in HIREHOOK_OUTBOUND_ALLOW)"
                )
            if not self.loopback_http:
                raise OutboundRefusedError(
                    "http:// to loopback is only accepted in development and tests "
                    "(use https://, or list the host in HIREHOOK_OUTBOUND_ALLOW)"
                )
        return url

    def check_send(self, url: str) -> None:
        """:meth:`check` at send time, for every request: the verdict depends on the URL's
        scheme and authority only, so it is kept per origin (``https://host:port``) and a
        call to a host already judged costs a dictionary look-up instead of a ``urlsplit``
        and the address checks. URLs ``urlsplit`` might read differently from that prefix
        (whitespace, control characters, a scheme not in lower case) are judged in full."""
        origin = _ORIGIN.match(url)
        if origin is None:
            self._check(url)
            return
        key = (self, origin.group(1))
        try:
            refusal = _VERDICTS[key]
        except KeyError:
            try:
                self._check(key[1])
                refusal = None
            except OutboundRefusedError as exc:
                refusal = str(exc)
            if len(_VERDICTS) >= _MAX_VERDICTS:
                # Origins come from configuration: a handful per tenant. Bounded all the same.
                _VERDICTS.clear()
            _VERDICTS[key] = refusal
        if refusal is not None:
            raise OutboundRefusedError(refusal)

    def check_resolved(self, host: str, address: Address) -> None:
        """At send time: ``host`` resolved to ``address``; refused if that is forbidden."""
        if forbidden_address(address) and not self.allowed(host, address):
            raise OutboundRefusedError(
                f"{_host(host)} resolves to a link-local or metadata address: not called"
            )


# The scheme and authority of a URL, up to where urlsplit ends its netloc, for URLs it splits
# at exactly that point: a lower-case http(s) scheme and no whitespace, control character or
# backslash in the authority.
_ORIGIN = re.compile(r"(https?://[^/?#\\\s\x00-\x1f\x7f]*)(?=[/?#]|\Z)")
_VERDICTS: dict[tuple[OutboundPolicy, str], str | None] = {}
_MAX_VERDICTS = 4096

# The process's policy: set from its settings when its services are built (and by the CLI);
# until then the strictest (production) one.
_policy = OutboundPolicy()


def configure(policy: OutboundPolicy) -> None:
    """Make ``policy`` this process's outbound policy."""
    global _policy  # noqa: PLW0603 - one policy per process, like its settings
    _policy = policy


def policy() -> OutboundPolicy:
    """This process's outbound policy."""
    return _policy


def check_url(url: str, *, what: str | None = None) -> str:
    """``url`` if this process's policy accepts it; :class:`OutboundRefusedError` (naming
    ``what``) otherwise."""
    return _policy.check(url, what=what)


def _checked(url: str) -> str:
    return check_url(url)


# A configuration field holding an outbound URL (pydantic names the field in its error).
OutboundUrl = Annotated[str, AfterValidator(_checked)]
