"""Render the deployment files of docs/operations.md for one site.

    python -m deploy.render --out /tmp/hopso-deploy --server-name hop.quangbinh.gov.vn \\
        --cert /etc/ssl/hopso/fullchain.pem --key /etc/ssl/hopso/privkey.pem \\
        --public-ip 203.0.113.10 [--scale-out 8081,8082] [--turn-secret ...]

writes, under --out, the files in the layout they take on the server (etc/systemd/system/...,
etc/nginx/sites-available/hopso, ...); docs/operations.md says where each goes and what to
run after copying. Nothing here touches the running system.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"
# What each template becomes under --out (the path it takes on the server).
FILES: dict[str, str] = {
    "hopso.service.j2": "etc/systemd/system/hopso.service",
    "hopso-web@.service.j2": "etc/systemd/system/hopso-web@.service",
    "hopso.env.j2": "etc/hopso/hopso.env",
    "scale-out.env.j2": "etc/hopso/scale-out.env",
    "nginx-hopso.conf.j2": "etc/nginx/sites-available/hopso",
    "turnserver.conf.j2": "etc/turnserver.conf",
    "logrotate-hopso.j2": "etc/logrotate.d/hopso",
    "nftables-hopso.nft.j2": "etc/nftables.d/hopso.nft",
}
# The SFU binds each transport's UDP socket at port 0 on every --ice-addresses IP: the kernel
# picks it from net.ipv4.ip_local_port_range (Debian's default below). Hopso has no port
# range setting of its own (docs/operations.md, "Media ports and firewall").
EPHEMERAL_UDP = (32768, 60999)
# documents/worker_pool.py PoolConfig.memory_limit: each document worker's address-space cap.
WORKER_MEMORY_MB = 1536
WEB_MEMORY_MB = 2048  # one web process with its SFU, caches and a few hundred connections


@dataclass(frozen=True)
class Site:
    server_name: str
    cert: str
    key: str
    public_ip: str
    local_ip: str | None = None  # the server's own address when public_ip is NAT's (1:1 NAT)
    install_dir: str = "/opt/hopso"
    data_dir: str = "/var/lib/hopso"
    log_dir: str = "/var/log/hopso"
    user: str = "hopso"
    web_port: int = 8080
    http_port: int = 80  # nginx's (tests use free high ports)
    https_port: int = 443
    listen_ipv6: bool = True
    scale_out: tuple[int, ...] = ()  # ports of hopso-web@PORT processes (PostgreSQL + Redis)
    metrics_port: int = 9464  # HOPSO_METRICS_ADDR 127.0.0.1:<this> (+ the web port's offset)
    document_workers: int = 2
    max_upload_mb: int = 100
    source_url: str = "https://example.invalid/hopso"  # README: --source-url (AGPL)
    database_url: str = "postgresql://hopso@127.0.0.1:5432/hopso"
    redis_url: str = "redis://127.0.0.1:6379/0"
    turn_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    turn_port: int = 3478
    turn_tls_port: int = 5349
    turn_relay: tuple[int, int] = (49160, 49999)
    nginx_log_dir: str = "/var/log/nginx"

    @property
    def ports(self) -> tuple[int, ...]:
        """The web processes nginx balances over: the scale-out ones, else the single one."""
        return self.scale_out or (self.web_port,)

    def metrics_addr(self, port: int) -> str:
        return f"127.0.0.1:{self.metrics_port + (port - self.web_port)}"

    @property
    def memory_max_mb(self) -> int:
        return WEB_MEMORY_MB + self.document_workers * WORKER_MEMORY_MB


def check(site: Site) -> None:
    """Refuse what would render a broken or unsafe file, with one line saying what."""
    if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", site.server_name):
        raise ValueError(f"--server-name must be a DNS name, got {site.server_name!r}")
    for name, address in (("public-ip", site.public_ip), ("local-ip", site.local_ip)):
        try:
            if address is not None:
                ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"--{name} must be an IP address, got {address!r}") from None
    for name in ("cert", "key", "install_dir", "data_dir", "log_dir", "nginx_log_dir"):
        value = getattr(site, name)
        if not value.startswith("/") or re.search(r"[\s;{}\"'$#]", value):
            raise ValueError(f"--{name.replace('_', '-')} must be an absolute path without "
                             f"spaces or ; {{ }} quotes $ #, got {value!r}")
    for name, url in (("source-url", site.source_url), ("database-url", site.database_url),
                      ("redis-url", site.redis_url)):
        if re.search(r"\s", url):  # one line of an environment file
            raise ValueError(f"--{name} must not contain spaces or line breaks")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", site.user):
        raise ValueError(f"--user must be a system user name, got {site.user!r}")
    ports = (site.web_port, *site.scale_out, site.turn_port, site.turn_tls_port,
             site.http_port, site.https_port)
    if any(not 1 <= p <= 65535 for p in ports) or len(set(ports)) != len(ports):
        raise ValueError("ports must be distinct and 1-65535")
    if not 1 <= site.document_workers <= 64 or not 1 <= site.max_upload_mb <= 2048:
        raise ValueError("--document-workers must be 1-64 and --max-upload-mb 1-2048")
    if not 1 <= site.metrics_port <= 65535 - len(site.ports):
        raise ValueError("--metrics-port must be 1-65535")
    low, high = site.turn_relay
    if not 1024 <= low < high <= 65535:
        raise ValueError("--turn-relay must be LOW-HIGH within 1024-65535")
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", site.turn_secret):
        raise ValueError("--turn-secret must be 16-128 characters of A-Z a-z 0-9 _ -")


def render(site: Site, out: Path) -> list[Path]:
    check(site)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True,
                             autoescape=False)  # config files, not HTML
    values = {**asdict(site), "site": site, "ephemeral_udp": EPHEMERAL_UDP}
    written = []
    for template, target in FILES.items():
        path = out / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(values), encoding="utf-8")
        written.append(path)
    for port in site.scale_out:  # one environment file per scale-out process
        path = out / f"etc/hopso/web-{port}.env"
        path.write_text(env.get_template("web-instance.env.j2").render(values, port=port),
                        encoding="utf-8")
        written.append(path)
    return written


def _ports(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(",") if p.strip())


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.render", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="directory to write into")
    parser.add_argument("--server-name", required=True, help="the site's DNS name")
    parser.add_argument("--cert", required=True, help="TLS certificate chain (PEM) for nginx")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    parser.add_argument("--public-ip", required=True,
                        help="the address browsers reach (HOPSO_ANNOUNCED_ADDRESS, TURN)")
    parser.add_argument("--local-ip", default=None, help="the server's own address, when "
                        "--public-ip is a NAT's (default: the same)")
    for name, default in (("install-dir", Site.install_dir), ("data-dir", Site.data_dir),
                          ("log-dir", Site.log_dir), ("user", Site.user),
                          ("database-url", Site.database_url), ("redis-url", Site.redis_url),
                          ("source-url", Site.source_url)):
        parser.add_argument(f"--{name}", default=default, help=f"default {default}")
    for option, number in (("web-port", Site.web_port), ("metrics-port", Site.metrics_port),
                           ("http-port", Site.http_port), ("https-port", Site.https_port),
                           ("document-workers", Site.document_workers),
                           ("max-upload-mb", Site.max_upload_mb)):
        parser.add_argument(f"--{option}", type=int, default=number, help=f"default {number}")
    parser.add_argument("--scale-out", type=_ports, default=(),
                        help="ports of the PostgreSQL + Redis processes, e.g. 8081,8082")
    parser.add_argument("--turn-secret", default=None, help="coturn's shared secret "
                        "(default: a new random one)")
    parser.add_argument("--turn-relay", type=_range, default=Site.turn_relay,
                        help="coturn's relay port range, default 49160-49999")
    args = parser.parse_args(list(argv))
    extra = {} if args.turn_secret is None else {"turn_secret": args.turn_secret}
    site = Site(server_name=args.server_name, cert=args.cert, key=args.key,
                public_ip=args.public_ip, local_ip=args.local_ip, install_dir=args.install_dir, data_dir=args.data_dir,
                log_dir=args.log_dir, user=args.user, web_port=args.web_port,
                scale_out=args.scale_out, metrics_port=args.metrics_port,
                http_port=args.http_port, https_port=args.https_port,
                document_workers=args.document_workers, max_upload_mb=args.max_upload_mb,
                database_url=args.database_url, redis_url=args.redis_url,
                source_url=args.source_url,
                turn_relay=args.turn_relay, **extra)
    try:
        for path in render(site, args.out):
            print(path)
    except ValueError as exc:
        print(f"deploy.render: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
