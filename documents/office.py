"""Optional Office → PDF conversion with a headless LibreOffice.

Runs ``soffice --convert-to pdf`` as a subprocess of the server (not in a
document worker: LibreOffice needs far more address space than the workers'
RLIMIT_AS). Each conversion gets a private temp dir and LibreOffice profile,
so concurrent conversions do not fight over the profile lock, and the whole
process group is killed on timeout (soffice forks soffice.bin).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

from documents.errors import DocumentRejected, RejectCode
from documents.validation import FileKind

_OUTPUT_TAIL = 2000


def find_converter() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


async def convert_to_pdf(
    src: Path, kind: FileKind, out_path: Path, timeout: float, *, binary: str | None = None
) -> Path:
    """Convert ``src`` (sniffed as ``kind``) to ``out_path``; raises DocumentRejected."""
    binary = binary or find_converter()
    if binary is None:
        raise DocumentRejected(RejectCode.CONVERSION_UNAVAILABLE)
    with tempfile.TemporaryDirectory(prefix="hopso-convert-") as tmp:
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
    env = {**os.environ, "HOME": str(work)}  # LibreOffice writes dotfiles to $HOME
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
        _kill_group(proc.pid)  # also reaps helpers left behind by a successful run
        if proc.returncode is None:
            await proc.wait()
    result = outdir / f"{source.stem}.pdf"
    if proc.returncode != 0 or not result.is_file():
        tail = out.decode("utf-8", "replace")[-_OUTPUT_TAIL:]
        raise DocumentRejected(RejectCode.CONVERSION_FAILED, f"exit {proc.returncode}: {tail}")
    return result


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
