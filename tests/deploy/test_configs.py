"""deploy/: the rendered files pass their own tools' checks (nginx -t, systemd-analyze verify,
logrotate -d), and the renderer refuses what would break them (docs/operations.md)."""

from __future__ import annotations

import datetime
import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deploy.render import FILES, Site, main, render

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def tool(name: str, why: str) -> str:
    """The tool's path; where it is missing, a skip saying so, except in CI (setup.sh --test
    installs nginx there), where it fails."""
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.is_file()), None)
    if found:
        return found
    message = f"{name} is not installed ({why}); `bash scripts/setup.sh --test` installs it as root"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hop.example.vn")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def site(tmp_path: Path, **overrides: object) -> Site:
    """A site rendered onto this machine's paths: the checkout as the install directory (its
    .venv/bin/python is what ExecStart names) and the test's directories for data and logs."""
    cert, key = self_signed(tmp_path)
    for name in ("data", "logs"):
        (tmp_path / name).mkdir(exist_ok=True)
    values: dict[str, object] = dict(
        server_name="hop.example.vn", cert=str(cert), key=str(key), public_ip="203.0.113.10",
        install_dir=str(ROOT), data_dir=str(tmp_path / "data"), log_dir=str(tmp_path / "logs"),
        nginx_log_dir=str(tmp_path / "logs"), user=getpass.getuser())
    values.update(overrides)
    return Site(**values)  # type: ignore[arg-type]


def wrapped(site_file: Path, work: Path) -> Path:
    """A main configuration that includes the rendered site the way Debian's nginx.conf does
    (http { include mime.types; include sites-enabled/*; }), with the pid, logs and temp
    files in the test's directory."""
    temp = work / "nginx-temp"
    temp.mkdir(exist_ok=True)
    mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").is_file() else ""
    main_conf = work / "nginx.conf"
    main_conf.write_text(f"""
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{}}
http {{
    {mime}
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site_file};
}}
""")
    return main_conf


def nginx_check(nginx: str, site_file: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """nginx -t on the rendered site, wrapped as Debian's nginx.conf includes it."""
    main_conf = wrapped(site_file, work)
    return subprocess.run([nginx, "-t", "-p", str(work), "-e", str(work / "nginx-error.log"),
                           "-c", str(main_conf)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("scale_out", [(), (8081, 8082)], ids=["single", "scale-out"])
def test_nginx_accepts_the_rendered_site(tmp_path: Path, scale_out: tuple[int, ...]) -> None:
    nginx = tool("nginx", "the reverse proxy's syntax check")
    render(site(tmp_path, scale_out=scale_out), tmp_path / "out")
    site_file = tmp_path / "out/etc/nginx/sites-available/hopso"
    text = site_file.read_text()
    for port in scale_out or (8080,):
        assert f"server 127.0.0.1:{port} " in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text and "hop.example.vn" in text
    result = nginx_check(nginx, site_file, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    # The check is real: one dropped semicolon and nginx refuses the file.
    site_file.write_text(text.replace("proxy_buffering off;", "proxy_buffering off", 1))
    broken = nginx_check(nginx, site_file, tmp_path)
    assert broken.returncode != 0 and "emerg" in broken.stderr


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd): units not verified")
    render(site(tmp_path, scale_out=(8081,)), tmp_path / "out")
    units = tmp_path / "out/etc/systemd/system"
    # A template is verified through one of its instances.
    (units / "hopso-web@8081.service").symlink_to("hopso-web@.service")
    result = subprocess.run([analyze, "verify", "--man=no", "./hopso.service",
                             "./hopso-web@8081.service"], cwd=units, capture_output=True,
                            text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "hopso" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr
    unit = (units / "hopso.service").read_text()
    assert f"MemoryMax={2048 + 2 * 1536}M" in unit and "LimitNOFILE=" in unit
    web = (units / "hopso-web@.service").read_text()
    assert "EnvironmentFile=/etc/hopso/scale-out.env" in web
    scale = (tmp_path / "out/etc/hopso/scale-out.env").read_text()
    assert "HOPSO_DATABASE_URL=postgresql://" in scale and "HOPSO_REDIS_URL=redis://" in scale
    instance = (tmp_path / "out/etc/hopso/web-8081.env").read_text()
    assert "HOPSO_PORT=8081" in instance and "HOPSO_METRICS_ADDR=127.0.0.1:9465" in instance


def test_logrotate_reads_the_rendered_rules(tmp_path: Path) -> None:
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not Path(logrotate).is_file():
        pytest.skip("logrotate is not installed: its rules not checked")
    render(site(tmp_path), tmp_path / "out")
    (tmp_path / "logs/hopso.log").write_text("a line\n")
    result = subprocess.run([logrotate, "-d", "-s", str(tmp_path / "state"),
                             str(tmp_path / "out/etc/logrotate.d/hopso")],
                            capture_output=True, text=True, timeout=60)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.returncode == 0 and not errors, result.stderr
    assert "hopso.log" in result.stderr


def test_every_file_is_written_and_says_where_it_goes(tmp_path: Path) -> None:
    written = render(site(tmp_path, scale_out=(8081, 8082)), tmp_path / "out")
    assert len(written) == len(FILES) + 2
    turn = (tmp_path / "out/etc/turnserver.conf").read_text()
    assert "use-auth-secret" in turn and "allowed-peer-ip=203.0.113.10" in turn
    firewall = (tmp_path / "out/etc/nftables.d/hopso.nft").read_text()
    assert "udp dport 32768-60999 accept" in firewall
    env = (tmp_path / "out/etc/hopso/hopso.env").read_text()
    assert "HOPSO_ANNOUNCED_ADDRESS=203.0.113.10" in env
    operations = (ROOT / "docs/operations.md").read_text()
    for target in FILES.values():  # docs/operations.md names where each file goes
        assert "/" + target in operations, target


@pytest.mark.parametrize("argument, value", [
    ("--server-name", "hop.example.vn; include /etc/passwd"),
    ("--cert", "relative/cert.pem"),
    ("--key", "/etc/ssl/key.pem;"),
    ("--public-ip", "not-an-ip"),
    ("--user", "Root User"),
    ("--scale-out", "8080"),  # the single process's port again
    ("--document-workers", "0"),
    ("--source-url", "https://git.example.vn/hopso\nHOPSO_DEMO=1"),
])
def test_render_refuses_what_would_break_a_file(tmp_path: Path, argument: str, value: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    args = {"--out": str(tmp_path / "out"), "--server-name": "hop.example.vn",
            "--cert": "/etc/ssl/hopso/fullchain.pem", "--key": "/etc/ssl/hopso/privkey.pem",
            "--public-ip": "203.0.113.10", argument: value}
    assert main([item for pair in args.items() for item in pair]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("deploy.render: ") and "\n" not in error
    assert not (tmp_path / "out").exists()


def test_render_is_a_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploy.render", "--out", str(tmp_path), "--server-name",
         "hop.example.vn", "--cert", "/etc/ssl/hopso/fullchain.pem", "--key",
         "/etc/ssl/hopso/privkey.pem", "--public-ip", "203.0.113.10", "--turn-secret",
         "s" * 32], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "static-auth-secret=" + "s" * 32 in (tmp_path / "etc/turnserver.conf").read_text()
