"""Optional Office → PDF conversion with a headless LibreOffice, with no network.

An Office file can make LibreOffice fetch what it links to (images, OLE objects, sections,
external workbooks; http: as well as file:), so a conversion runs:

* in its own network namespace (``unshare --user --map-root-user --net``, or ``unshare
  --net`` as root) whose only interface is a loopback that is down: nothing, not even the
  host's 127.0.0.1 services (PostgreSQL, Redis, this server), is reachable. The namespace
  is tested once per process (a child must fail to reach a socket we listen on); if none
  can be made the conversion is refused (conversion_unavailable) unless the operator set
  ``--office-without-sandbox`` (Limits.office_without_sandbox), which is logged;
* behind documents._office_child, which sets resource limits (address space, file size,
  CPU, no core dumps, nice), removes the package's external links (documents.office_links)
  and writes a LibreOffice profile that never updates links and runs no macros, then
  becomes soffice;
* in a private temp dir holding the profile (-env:UserInstallation), $HOME and $TMPDIR, so
  concurrent conversions do not fight over the profile lock and nothing is left behind;
  the whole process group is killed on timeout or cancellation (soffice forks soffice.bin).

Not a subprocess of a document worker: LibreOffice needs more address space than the
workers' RLIMIT_AS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from documents import _office_child, office_links
from documents.errors import DocumentRejected, RejectCode
from documents.validation import FileKind

log = logging.getLogger(__name__)

_OUTPUT_TAIL = 2000
_KILL_WAIT = 2.0  # seconds to wait for a killed conversion's processes to be gone
MEMORY_LIMIT = 2 << 30  # RLIMIT_AS of LibreOffice (a 500-page .docx converts within 512 MiB)
FILE_LIMIT = 2 << 30  # RLIMIT_FSIZE: the rewritten package, the PDF, LibreOffice's temp files
_PROBE_TIMEOUT = 10.0

# Run inside a candidate sandbox: exit 0 only if the sole interface is lo and a socket the
# parent listens on at 127.0.0.1 cannot be reached.
_PROBE = """import socket, sys
names = [l.split(":")[0].strip() for l in open("/proc/self/net/dev").read().splitlines()[2:]]
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
except OSError:
    sys.exit(0 if names == ["lo"] else 4)
sys.exit(5)
"""

_verified: dict[tuple[str, ...], bool] = {}  # sandbox prefix -> it isolates (per process)
_warned: set[str] = set()


def find_converter() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def _candidates() -> list[tuple[str, ...]]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    found: list[tuple[str, ...]] = [(unshare, "--user", "--map-root-user", "--net", "--ipc", "--")]
    if os.geteuid() == 0:  # root needs no user namespace (and some containers forbid one)
        found.append((unshare, "--net", "--ipc", "--"))
    return found


async def network_sandbox() -> tuple[str, ...] | None:
    """A command prefix that runs its arguments without network, or None if none works."""
    for prefix in _candidates():
        if prefix not in _verified:
            _verified[prefix] = await _isolates(prefix)
        if _verified[prefix]:
            return prefix
    return None


async def _isolates(prefix: tuple[str, ...]) -> bool:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        try:
            proc = await asyncio.create_subprocess_exec(
                *prefix, sys.executable, "-I", "-c", _PROBE, str(port),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            log.info("network sandbox %s unavailable: %s", prefix[1:-1], exc)
            return False
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), _PROBE_TIMEOUT)
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            return False
    if proc.returncode != 0:
        log.info("network sandbox %s unavailable (exit %s): %s", " ".join(prefix[1:-1]),
                 proc.returncode, out.decode("utf-8", "replace").strip()[-300:])
    return proc.returncode == 0


def _once(key: str, level: int, message: str) -> None:
    """Log once per process and situation (which unshare, as whom), not once per upload."""
    if key not in _warned:
        _warned.add(key)
        log.log(level, message)


async def _sandbox_or_refuse(allow_unsandboxed: bool) -> tuple[str, ...]:
    prefix = await network_sandbox()
    if prefix is not None:
        return prefix
    situation = " ".join(" ".join(c) for c in _candidates()) or "no unshare"
    if allow_unsandboxed:
        _once(f"unsandboxed: {situation}", logging.WARNING,
              "Office conversion runs WITHOUT a network sandbox (--office-without-sandbox): "
              "LibreOffice can reach the network if a document's link gets past the rewrite")
        return ()
    _once(f"refused: {situation}", logging.ERROR,
          "Office conversion refused: no network namespace can be made for LibreOffice "
          "(needs util-linux unshare and user namespaces: sysctl "
          "kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0, or root). "
          "See docs/security.md; --office-without-sandbox accepts the risk instead")
    raise DocumentRejected(RejectCode.CONVERSION_UNAVAILABLE, "no network sandbox")


async def convert_to_pdf(
    src: Path, kind: FileKind, out_path: Path, timeout: float, *, binary: str | None = None,
    allow_unsandboxed: bool = False, max_unpacked: int = office_links.MAX_UNPACKED,
) -> Path:
    """Convert ``src`` (sniffed as ``kind``) to ``out_path``; raises DocumentRejected."""
    binary = binary or find_converter()
    if binary is None:
        raise DocumentRejected(RejectCode.CONVERSION_UNAVAILABLE)
    prefix = await _sandbox_or_refuse(allow_unsandboxed)
    # ignore_cleanup_errors: a dying process must not turn a rejection into an OSError.
    with tempfile.TemporaryDirectory(prefix="hopso-convert-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        output = await _run(prefix, binary, Path(src).resolve(), kind, work, timeout,
                            max_unpacked)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.move, output, out_path)
    return out_path


async def _run(prefix: tuple[str, ...], binary: str, src: Path, kind: FileKind, work: Path,
               timeout: float, max_unpacked: int) -> Path:
    outdir = work / "out"
    # The blob has no extension; LibreOffice picks its import filter partly by it.
    source = work / f"input{kind.extension}"
    report = work / "report.json"
    profile = work / "profile"
    argv = [
        shutil.which(binary) or binary, "--headless", "--norestore", "--nologo", "--nodefault",
        "--nolockcheck", f"-env:UserInstallation={profile.as_uri()}",
        "--convert-to", "pdf", "--outdir", str(outdir), str(source),
    ]  # fmt: skip
    cfg = _office_child.ChildConfig(
        source=str(src), kind=kind.value, input=str(source), profile=str(profile),
        report=str(report), argv=argv, memory_bytes=MEMORY_LIMIT, file_bytes=FILE_LIMIT,
        cpu_seconds=math.ceil(timeout) + 5, max_unpacked=max_unpacked)
    scratch = work / "tmp"
    scratch.mkdir()
    # LibreOffice writes dotfiles to $HOME and its own temp files (lu*.tmp, holding document
    # content) to $TMPDIR; a killed soffice cannot clean those up, so both live in `work`,
    # which is removed whatever happens. PYTHONPATH: the child imports this package.
    env = {**os.environ, "HOME": str(work), "TMPDIR": str(scratch),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-m", "documents._office_child", cfg.to_argv(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        env=env,
        cwd=str(work),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        raise DocumentRejected(RejectCode.CONVERSION_FAILED, f"timed out after {timeout}s") from None
    finally:
        killed = _kill_group(proc.pid)  # after a successful run the group is usually empty
        if proc.returncode is None:
            await proc.wait()
        if killed:
            await _group_gone(proc.pid)  # soffice.bin is not our child: wait till it is dead
    outcome = _read_report(report)
    if "rejected" in outcome:
        raise DocumentRejected(RejectCode.CONVERSION_FAILED, str(outcome["rejected"]))
    if outcome.get("removed"):
        log.info("external links removed before converting %s: %s", src.name, outcome["removed"])
    result = outdir / f"{source.stem}.pdf"
    if proc.returncode != 0 or not result.is_file():
        tail = out.decode("utf-8", "replace")[-_OUTPUT_TAIL:]
        raise DocumentRejected(RejectCode.CONVERSION_FAILED, f"exit {proc.returncode}: {tail}")
    return result


def _read_report(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the child died before writing it; the exit status tells
    return data if isinstance(data, dict) else {}


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal the group; False if it has no process left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def _group_gone(pgid: int, limit: float = _KILL_WAIT) -> None:
    # Zombies do not count: soffice leaves gpgconf/gpg zombies for init to reap, which
    # a container's init may do late or never. Bounded, in case /proc lies.
    for _ in range(int(limit / 0.02)):
        if not await asyncio.to_thread(_live_members, pgid):
            return
        await asyncio.sleep(0.02)


def _live_members(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (Linux /proc; else False)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False
