"""Optional Office → PDF conversion with a headless LibreOffice.

Runs ``soffice --convert-to pdf`` as a subprocess of the server (not in a
document worker: LibreOffice needs far more address space than the workers'
RLIMIT_AS). Each conversion gets a private temp dir holding its LibreOffice
profile (-env:UserInstallation), $HOME and $TMPDIR, so concurrent conversions
do not fight over the profile lock and nothing is left behind; the whole
process group is killed on timeout or cancellation (soffice forks soffice.bin).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path

from documents.errors import DocumentRejected, RejectCode
from documents.validation import FileKind

_OUTPUT_TAIL = 2000
_KILL_WAIT = 2.0  # seconds to wait for a killed conversion's processes to be gone


def find_converter() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


async def convert_to_pdf(
    src: Path, kind: FileKind, out_path: Path, timeout: float, *, binary: str | None = None
) -> Path:
    """Convert ``src`` (sniffed as ``kind``) to ``out_path``; raises DocumentRejected."""
    binary = binary or find_converter()
    if binary is None:
        raise DocumentRejected(RejectCode.CONVERSION_UNAVAILABLE)
    # ignore_cleanup_errors: a dying process must not turn a rejection into an OSError.
    with tempfile.TemporaryDirectory(prefix="hopso-convert-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        # The blob has no extension; LibreOffice picks its import filter partly by it.
        source = work / f"input{kind.extension}"
        await asyncio.to_thread(shutil.copyfile, src, source)
        output = await _run_soffice(binary, source, work, timeout)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.move, output, out_path)
    return out_path


async def _run_soffice(binary: str, source: Path, work: Path, timeout: float) -> Path:
    outdir = work / "out"
    cmd = [
        binary, "--headless", "--norestore", "--nologo", "--nodefault", "--nolockcheck",
        f"-env:UserInstallation={(work / 'profile').as_uri()}",
        "--convert-to", "pdf", "--outdir", str(outdir), str(source),
    ]  # fmt: skip
    scratch = work / "tmp"
    scratch.mkdir()
    # LibreOffice writes dotfiles to $HOME and its own temp files (lu*.tmp, holding document
    # content) to $TMPDIR; a killed soffice cannot clean those up, so both live in `work`,
    # which is removed whatever happens.
    env = {**os.environ, "HOME": str(work), "TMPDIR": str(scratch)}
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        env=env,
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
    result = outdir / f"{source.stem}.pdf"
    if proc.returncode != 0 or not result.is_file():
        tail = out.decode("utf-8", "replace")[-_OUTPUT_TAIL:]
        raise DocumentRejected(RejectCode.CONVERSION_FAILED, f"exit {proc.returncode}: {tail}")
    return result


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
