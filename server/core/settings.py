"""Settings: parsed once from the command line and environment, validated, then read-only."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.core.trusted_proxy import parse_networks


class ConfigError(Exception):
    """Invalid configuration; the message is one line a person can act on."""


class NodeConfigError(ConfigError):
    """Invalid cascade configuration."""


@dataclass(frozen=True)
class NodeSettings:
    """This node's place in the tree.

    HOPSO_NODE_UNIT        this node's administrative unit, e.g. "ward:dong-hoi-1"
    HOPSO_PARENT_URL       the parent node's base URL (unset on the root)
    HOPSO_NODE_SECRET      this node's credential toward its parent
    HOPSO_NODE_CHILDREN    credentials of child units: "unit=secret,unit=secret"
    HOPSO_PARENT_CA        PEM file of the CA (or self-signed certificate) to trust for an
                           https:// parent, instead of the system's CAs
    HOPSO_NODE_LINK_RTO_MIN_MS  the minimum TCP retransmission timeout of node link sockets
                           (both ends), 0-200 ms, 0: the system's (server/cascade/link_socket.py)
    """

    unit: str
    parent_url: str | None = None
    secret: str | None = None
    children: Mapping[str, str] = field(default_factory=dict)
    parent_ca: Path | None = None
    link_rto_min_ms: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NodeSettings | None:
        unit = (env.get("HOPSO_NODE_UNIT") or "").strip()
        if not unit:
            return None
        parent = (env.get("HOPSO_PARENT_URL") or "").strip() or None
        secret = (env.get("HOPSO_NODE_SECRET") or "").strip() or None
        if parent and not parent.startswith(("http://", "https://")):
            raise NodeConfigError("HOPSO_PARENT_URL must start with http:// or https://")
        if parent and (not secret or len(secret) < 16):
            raise NodeConfigError("HOPSO_NODE_SECRET (16+ characters) is needed with "
                                  "HOPSO_PARENT_URL")
        children: dict[str, str] = {}
        for item in (env.get("HOPSO_NODE_CHILDREN") or "").split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or len(value.strip()) < 16:
                raise NodeConfigError("HOPSO_NODE_CHILDREN entries are unit=secret "
                                      "(secret of 16+ characters)")
            children[name.strip()] = value.strip()
        if unit in children:
            raise NodeConfigError("a node cannot be its own child")
        ca_text = (env.get("HOPSO_PARENT_CA") or "").strip()
        ca = Path(ca_text) if ca_text else None
        if ca is not None and not (parent or "").startswith("https://"):
            raise NodeConfigError("HOPSO_PARENT_CA is for an https:// HOPSO_PARENT_URL")
        if ca is not None and not ca.is_file():
            raise NodeConfigError(f"HOPSO_PARENT_CA file not found: {ca}")
        rto_text = (env.get("HOPSO_NODE_LINK_RTO_MIN_MS") or "").strip() or "20"
        if not rto_text.isdigit() or not 0 <= int(rto_text) <= 200:  # the kernel's 200 ms cap
            raise NodeConfigError("HOPSO_NODE_LINK_RTO_MIN_MS must be 0-200 (milliseconds; "
                                  "0: the system's minimum)")
        return cls(unit, parent, secret, children, ca, int(rto_text))


@dataclass(frozen=True)
class SocketLimits:
    """Budgets on socket.io events (server/core/socket_guard.py; docs/security.md (Socket events)).

    Sized from what the tablet client does at most: a presenter's laser pointer (25/s) plus
    view moves (8/s) plus pen strokes, a burst of media signaling on join, and an offline
    queue flushing a couple of hundred pen strokes on reconnect. Per server process."""

    rate_per_s: float = 50.0  # events per connection, sustained
    burst: int = 200  # events per connection at once (refilled at rate_per_s)
    user_rate_per_s: float = 100.0  # all of one user's connections together
    user_burst: int = 400
    # A connection's handlers running at once, and its events waiting for one of them
    # (beyond: rate_limited). The tablet sends a handful at once at most; a flooder's share
    # of the server at any moment is what these let in, so they are kept small.
    in_flight: int = 4
    queued: int = 16
    # The same for namespaces without these budgets (/node: one link per child node carries
    # all its meetings; on reconnect it re-pulls every stream at once; it has its own bucket).
    link_in_flight: int = 16
    link_queued: int = 1024
    flood_strikes: int = 50  # refused events within flood_window_s that drop the connection
    flood_window_s: float = 10.0
    flood_cooldown_s: float = 10.0  # the dropped user's new connections are refused meanwhile
    outgoing: int = 1000  # packets waiting to be sent to one client; beyond: too slow, dropped

    def __post_init__(self) -> None:
        for name in ("rate_per_s", "burst", "user_rate_per_s", "user_burst", "in_flight",
                     "queued", "link_in_flight", "link_queued", "flood_strikes",
                     "flood_window_s", "outgoing"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"socket limit {name} must be positive")
        if self.flood_cooldown_s < 0:
            raise ConfigError("socket limit flood_cooldown_s must not be negative")


@dataclass(frozen=True)
class MediaTimings:
    """How long the SFU waits for a transport to connect, how often it sends RTCP reports,
    and how often chairs get each connection's stats (server/conference). Deployments keep
    the defaults (the first two are media/config.py's); tests shorten them."""

    ice_timeout_s: float = 20.0
    rtcp_interval_s: float = 1.0
    stats_interval_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("ice_timeout_s", "rtcp_interval_s", "stats_interval_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"media timing {name} must be positive")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("hopso-data")
    database_url: str | None = None  # None: SQLite file in data_dir
    redis_url: str | None = None  # None: in-process socket.io manager
    demo: bool = False
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Addresses the SFU gathers ICE candidates on, and the one it announces (NAT/LAN).
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    announced_address: str | None = None
    ice_servers: tuple[str, ...] = ()  # STUN/TURN URLs handed to browsers
    # coturn's shared secret (use-auth-secret): turn:/turns: URLs get per-user credentials
    # valid turn_ttl_s (server/conference/turn.py). Never printed (repr=False).
    turn_secret: str | None = field(default=None, repr=False)
    turn_ttl_s: int = 12 * 3600
    # Proxies whose X-Forwarded-For is believed (server/core/trusted_proxy.py); none: the
    # TCP peer is the client.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    session_ttl_s: int = 12 * 3600
    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    document_workers: int = 2  # sandboxed processes rendering documents
    login_attempts_per_5min: int = 10  # failures on one username, then it is locked 5 min
    login_ip_failures_per_5min: int = 100  # failures from one address, then it is slowed
    # Tests and benchmarks only: argon2id's cheapest profile (server/core/passwords.py). A visible
    # setting (--fast-hash, logged as a warning at start), never read behind the app's back.
    fast_hash: bool = False
    # Convert Office files with LibreOffice even where it cannot run in a network namespace
    # (documents/office.py); logged as a warning. Default: such conversions are refused.
    office_without_sandbox: bool = False
    metrics_token: str | None = None  # bearer token for Prometheus; else admins only
    # (host, port) of a separate site serving /metrics alone (server/core/metrics.py); the
    # main site then has none.
    metrics_addr: tuple[str, int] | None = None
    # Readiness (server/core/health.py) fails below this much free disk (MB) for the data
    # directory or the document store.
    min_free_disk_mb: int = 512
    # Retention (server/archive/retention.py): days recordings and archive files are kept
    # (0: until deleted by hand); the free disk space (MB) a recording needs to start.
    recording_retention_days: int = 365
    archive_retention_days: int = 90
    recording_min_free_mb: int = 1024
    retention_interval_s: float = 3600.0  # how often the retention sweep runs
    source_url: str = "https://example.invalid/hopso"  # AGPL: where users get the source
    timezone: str = "Asia/Ho_Chi_Minh"  # how pages show times (stored in UTC)
    node: NodeSettings | None = None  # this node's place in a cascade (HOPSO_NODE_*)
    # Seals secret ballots while their vote is open (rooms/ballot_seal.py); None: ballot.key
    # in the data dir. Every process of one deployment must read the same key.
    ballot_key_file: Path | None = None
    # Signed minutes (server/procedure/minutes_signing.py): the CA certificates a signer's
    # certificate must chain to (PEM file; None: signing refused, except --demo's TEST CA),
    # and a PKCS#11 token the server signs with (module path, token label).
    signing_ca: Path | None = None
    signing_pkcs11_module: Path | None = None
    signing_pkcs11_token: str | None = None
    socket_limits: SocketLimits = field(default_factory=SocketLimits)
    media_timings: MediaTimings = field(default_factory=MediaTimings)
    # The shortest time limit a vote may be opened with (rooms/votes.py's MIN_TIME_LIMIT_S):
    # deployments keep it; tests shorten it, to see a limit run out in seconds.
    vote_time_limit_min_s: int = 10
    # Each subscriber's downlink estimate is shared out among what it receives (simulcast
    # layers per subscriber, audio only below a floor: media/allocator.py, docs/media.md).
    # On by default: audio only (and a stream paused) needs loss in the subscriber's receiver
    # reports besides a low estimate, so a CPU-starved browser's collapsed REMB only lowers
    # its layers. Off: every subscriber gets the layer its tile asks for, whatever its link.
    bandwidth_allocation: bool = True
    # Subscribers' downlinks estimated by the server from their transport-wide feedback
    # (transport-cc; media/bwe.py), with padding probes before a layer is raised
    # (media/probe.py): on by default, a restored link is found within seconds (REMB: 25 s
    # or never; docs/media.md, "Transport-cc from subscribers"). Off: the browsers' REMB.
    subscriber_transport_cc: bool = True
    # Confidential page images (server/documents/runtime.py): the per-process cache of
    # rendered, watermarked pages (0: off) and how long one image, and the time burned into
    # it, is served again.
    confidential_cache_mb: float = 64
    watermark_bucket_s: int = 600
    # Where the login limiter keeps its counters in Redis; processes sharing it share limits.
    login_redis_prefix: str = "hopso:login:"
    # The Redis channel on which processes sharing it pass on cross-process bus events
    # (server/core/bus_bridge.py).
    bus_redis_channel: str = "hopso:bus"

    @property
    def sqlalchemy_url(self) -> str:
        """The async driver URL for SQLAlchemy."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'hopso.sqlite3').resolve()}"
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain):]
        return url

    @property
    def ballot_key_path(self) -> Path:
        return self.ballot_key_file or self.data_dir / "ballot.key"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def secure_cookies(self) -> bool:
        return self.tls


# (flag, env var, help) — one table, so flags and environment can never drift apart.
_OPTIONS: Sequence[tuple[str, str, str]] = (
    ("--host", "HOPSO_HOST", "address to listen on (default 127.0.0.1)"),
    ("--port", "HOPSO_PORT", "TCP port (default 8080)"),
    ("--data-dir", "HOPSO_DATA_DIR", "directory for the SQLite file, documents and TLS files"),
    ("--database-url", "HOPSO_DATABASE_URL", "PostgreSQL URL for scale-out (default: SQLite)"),
    ("--redis-url", "HOPSO_REDIS_URL", "Redis URL for socket.io across processes"),
    ("--tls-cert", "HOPSO_TLS_CERT", "PEM certificate to serve HTTPS with (implies --tls)"),
    ("--tls-key", "HOPSO_TLS_KEY", "PEM private key for --tls-cert"),
    ("--ice-addresses", "HOPSO_ICE_ADDRESSES", "comma-separated local IPs for media (ICE)"),
    ("--announced-address", "HOPSO_ANNOUNCED_ADDRESS", "IP announced to clients (NAT/LAN)"),
    ("--ice-servers", "HOPSO_ICE_SERVERS", "comma-separated STUN/TURN URLs for browsers"),
    ("--bandwidth-allocation", "HOPSO_BANDWIDTH_ALLOCATION",
     "on|off: share each subscriber's downlink out among its video layers (default on)"),
    ("--subscriber-transport-cc", "HOPSO_SUBSCRIBER_TRANSPORT_CC",
     "on|off: estimate subscribers' downlinks from their transport-cc feedback, probing with "
     "padding (default on)"),
    ("--turn-secret", "HOPSO_TURN_SECRET",
     "coturn's static-auth-secret: TURN credentials for browsers (16-256 characters)"),
    ("--turn-ttl", "HOPSO_TURN_TTL_S", "lifetime of a TURN credential in seconds (default 43200)"),
    ("--trusted-proxies", "HOPSO_TRUSTED_PROXIES",
     "comma-separated addresses/networks whose X-Forwarded-For is believed (default none)"),
    ("--session-ttl", "HOPSO_SESSION_TTL", "login session lifetime in seconds"),
    ("--max-upload-mb", "HOPSO_MAX_UPLOAD_MB", "largest document upload in MB"),
    ("--document-workers", "HOPSO_DOCUMENT_WORKERS", "processes rendering documents (default 2)"),
    ("--source-url", "HOPSO_SOURCE_URL", "link to this deployment's source code (AGPL)"),
    ("--timezone", "HOPSO_TIMEZONE", "time zone pages show times in (default Asia/Ho_Chi_Minh)"),
    ("--ballot-key-file", "HOPSO_BALLOT_KEY_FILE",
     "key sealing secret ballots while a vote is open (default: ballot.key in the data dir)"),
    ("--metrics-token", "HOPSO_METRICS_TOKEN",
     "bearer token Prometheus sends to GET /metrics (16+ characters; default: admins only)"),
    ("--metrics-addr", "HOPSO_METRICS_ADDR",
     "host:port of a separate listener for GET /metrics (default: on the main port)"),
    ("--min-free-disk-mb", "HOPSO_MIN_FREE_DISK_MB",
     "readiness fails below this free disk space in MB (default 512)"),
    ("--recording-retention-days", "HOPSO_RECORDING_RETENTION_DAYS",
     "days recordings are kept, then deleted (0: kept; default 365)"),
    ("--archive-retention-days", "HOPSO_ARCHIVE_RETENTION_DAYS",
     "days archive files (ZIP, composite MP4) stay on the server (0: kept; default 90)"),
    ("--recording-min-free-mb", "HOPSO_RECORDING_MIN_FREE_MB",
     "a recording is refused below this free disk space in MB (default 1024)"),
    ("--signing-ca", "HOPSO_SIGNING_CA",
     "PEM file of the CA certificates signers of the minutes must chain to"),
    ("--signing-pkcs11-module", "HOPSO_SIGNING_PKCS11_MODULE",
     "PKCS#11 library of the signing token (e.g. /usr/lib/softhsm/libsofthsm2.so)"),
    ("--signing-pkcs11-token", "HOPSO_SIGNING_PKCS11_TOKEN", "label of the signing token"),
)
_FLAGS: Sequence[tuple[str, str, str]] = (
    ("--demo", "HOPSO_DEMO", "seed the Quảng Bình demo data and print its logins"),
    ("--tls", "HOPSO_TLS", "serve HTTPS (self-signed certificate made on first start)"),
    ("--fast-hash", "HOPSO_FAST_HASH",
     "TESTS ONLY: hash new passwords with argon2id's cheapest profile"),
    ("--office-without-sandbox", "HOPSO_OFFICE_WITHOUT_SANDBOX",
     "convert Office files even where LibreOffice cannot be cut off the network (unsafe)"),
)


def parse_settings(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Settings:
    """Command line wins over environment (os.environ, read now, unless `env` is given);
    raises ConfigError on any invalid value."""
    if env is None:
        env = os.environ
    parser = argparse.ArgumentParser(prog="run.py", description="Hopso server")
    for flag, var, text in _OPTIONS:
        parser.add_argument(flag, default=env.get(var), help=f"{text} [{var}]")
    for flag, var, text in _FLAGS:
        parser.add_argument(flag, action="store_true", default=_truthy(env.get(var)),
                            help=f"{text} [{var}]")
    args = parser.parse_args(list(argv))
    return _validate(vars(args), NodeSettings.from_env(env))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _on_off(name: str, value: str | None, default: bool) -> bool:
    if value in (None, ""):
        return default
    word = str(value).strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be on or off, got {value!r}")


def _int(name: str, value: str | None, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {number}")
    return number


def _ip(name: str, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ConfigError(f"{name} must be an IP address, got {value!r}") from None


def _host_port(name: str, value: str) -> tuple[str, int]:
    """'127.0.0.1:9464', '[::1]:9464' or 'name:9464' -> (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{name} must be host:port with a port 1-65535, got {value!r}")
    return host, int(port)


def _pem_certificates(name: str, path: Path) -> None:
    """A PEM file holding at least one readable certificate, else ConfigError."""
    from cryptography import x509  # only when signing is configured
    try:
        x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        raise ConfigError(f"{name} is not a PEM file of certificates: {path}") from None


def _validate(a: dict[str, object], node: NodeSettings | None = None) -> Settings:
    def s(key: str) -> str | None:
        value = a.get(key)
        return str(value) if value not in (None, "") else None

    db_url = s("database_url")
    if db_url and not db_url.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://",
                                         "sqlite://", "sqlite+aiosqlite://")):
        raise ConfigError(f"HOPSO_DATABASE_URL must start with postgresql:// or sqlite://, "
                          f"got {db_url.split(':', 1)[0]}://")
    redis_url = s("redis_url")
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("HOPSO_REDIS_URL must start with redis:// or rediss://")
    cert, key = s("tls_cert"), s("tls_key")
    if bool(cert) != bool(key):
        raise ConfigError("--tls-cert and --tls-key must be given together")
    for label, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{label} file not found: {path}")
    ice = tuple(_ip("--ice-addresses", x) for x in (s("ice_addresses") or "127.0.0.1").split(",")
                if x.strip())
    announced = s("announced_address")
    ice_servers = tuple(x.strip() for x in (s("ice_servers") or "").split(",") if x.strip())
    for url in ice_servers:
        if not url.startswith(("stun:", "turn:", "turns:")):
            raise ConfigError(f"--ice-servers entries must start with stun:, turn: or turns:, got {url!r}")
    turn_secret = s("turn_secret")
    if turn_secret is not None and not re.fullmatch(r"[!-~]{16,256}", turn_secret):
        raise ConfigError("--turn-secret must be 16-256 printable ASCII characters, no spaces")
    if turn_secret is None and any(u.startswith(("turn:", "turns:")) for u in ice_servers):
        # Browsers refuse a turn: server without credentials (the whole RTCPeerConnection).
        raise ConfigError("turn:/turns: URLs in --ice-servers need --turn-secret "
                          "(coturn's static-auth-secret)")
    try:
        trusted_proxies = parse_networks(s("trusted_proxies") or "")
    except ValueError as exc:
        raise ConfigError(f"--trusted-proxies: {exc}") from None
    zone = s("timezone") or "Asia/Ho_Chi_Minh"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--timezone is not a known time zone: {zone!r}") from None
    data_dir = Path(s("data_dir") or "hopso-data")
    metrics_token = s("metrics_token")
    if metrics_token is not None and not re.fullmatch(r"[!-~]{16,256}", metrics_token):
        raise ConfigError("--metrics-token must be 16-256 printable ASCII characters, no spaces")
    metrics_addr = None
    if (addr_text := s("metrics_addr")) is not None:
        metrics_addr = _host_port("--metrics-addr", addr_text)
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"--data-dir is not a directory: {data_dir}")
    signing_ca, p11_module = s("signing_ca"), s("signing_pkcs11_module")
    for label, path in (("--signing-ca", signing_ca), ("--signing-pkcs11-module", p11_module)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{label} file not found: {path}")
    if bool(p11_module) != bool(s("signing_pkcs11_token")):
        raise ConfigError("--signing-pkcs11-module and --signing-pkcs11-token go together")
    if signing_ca:
        _pem_certificates("--signing-ca", Path(signing_ca))
    return Settings(
        host=s("host") or "127.0.0.1",
        port=_int("--port", s("port"), 8080, 0, 65535),
        data_dir=data_dir,
        database_url=db_url,
        redis_url=redis_url,
        demo=bool(a.get("demo")),
        tls=bool(a.get("tls")) or bool(cert),
        tls_cert=Path(cert) if cert else None,
        tls_key=Path(key) if key else None,
        ice_addresses=ice,
        announced_address=_ip("--announced-address", announced) if announced else None,
        ice_servers=ice_servers,
        bandwidth_allocation=_on_off("--bandwidth-allocation", s("bandwidth_allocation"), True),
        subscriber_transport_cc=_on_off("--subscriber-transport-cc",
                                        s("subscriber_transport_cc"), True),
        turn_secret=turn_secret,
        turn_ttl_s=_int("--turn-ttl", s("turn_ttl"), 12 * 3600, 60, 7 * 86400),
        trusted_proxies=trusted_proxies,
        session_ttl_s=_int("--session-ttl", s("session_ttl"), 12 * 3600, 60, 30 * 86400),
        max_upload_bytes=_int("--max-upload-mb", s("max_upload_mb"), 100, 1, 2048) * 1024 * 1024,
        document_workers=_int("--document-workers", s("document_workers"), 2, 1, 64),
        source_url=s("source_url") or Settings.source_url,
        timezone=zone,
        node=node,
        ballot_key_file=Path(ballot_key) if (ballot_key := s("ballot_key_file")) else None,
        fast_hash=bool(a.get("fast_hash")),
        office_without_sandbox=bool(a.get("office_without_sandbox")),
        metrics_token=metrics_token,
        metrics_addr=metrics_addr,
        min_free_disk_mb=_int("--min-free-disk-mb", s("min_free_disk_mb"), 512, 0, 10**7),
        recording_retention_days=_int("--recording-retention-days",
                                      s("recording_retention_days"), 365, 0, 36500),
        archive_retention_days=_int("--archive-retention-days", s("archive_retention_days"),
                                    90, 0, 36500),
        recording_min_free_mb=_int("--recording-min-free-mb", s("recording_min_free_mb"),
                                   1024, 0, 10**7),
        signing_ca=Path(signing_ca) if signing_ca else None,
        signing_pkcs11_module=Path(p11_module) if p11_module else None,
        signing_pkcs11_token=s("signing_pkcs11_token"),
    )
