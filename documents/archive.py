"""Verify a meeting archive offline: `python -m documents.archive verify ARCHIVE [--ca PEM]`.

Needs nothing but the file (no server, no database). It checks, and names what fails:
1. the ZIP and its manifest can be read, and no member is outside the manifest or missing;
2. every member's SHA-256 and size match the manifest;
3. the audit chain (audit/chain.json) links: each entry's hash is recomputed from the one
   before it (rooms/audit.py's rule), seq has no gap, and it ends at the recorded head;
4. the minutes in the archive are the ones the chain recorded: the `minutes_generated` and
   `minutes_signed` entries hold each file's SHA-256;
5. the signed minutes' PAdES signatures are intact and valid (pyHanko, when installed), and
   trusted when `--ca` gives the CA certificates.

Exit status: 0 all checks pass, 1 a check fails (the archive was altered or is damaged),
2 the file cannot be read as an archive at all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from documents.archive_format import FORMAT, MANIFEST, safe_member_path
from rooms.audit import GENESIS, entry_hash

MAX_MANIFEST = 16 * 1024 * 1024


class Unreadable(Exception):
    """Not an archive this command can read (exit status 2)."""


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "checked": self.checked}


def verify(path: Path, anchors_file: Path | None = None) -> Report:
    """Every check above; Unreadable if `path` is not a readable archive."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise Unreadable(f"{path}: not a readable ZIP archive ({exc})") from None
    with zf:
        manifest = _manifest(zf)
        report = Report()
        members = {m["path"]: m for m in manifest["members"]}
        _check_members(zf, members, report)
        chain = _read_json(zf, members, "audit", report)
        if chain is not None:
            _check_chain(chain, manifest, report)
            _check_minutes(zf, members, chain, report)
        _check_signatures(zf, members, anchors_file, report)
    return report


def _manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise Unreadable(f"no {MANIFEST}: not a Hopso meeting archive") from None
    if info.file_size > MAX_MANIFEST:
        raise Unreadable(f"{MANIFEST} is too large")
    try:
        manifest = json.loads(zf.read(info))
    except (ValueError, zipfile.BadZipFile, OSError) as exc:
        raise Unreadable(f"{MANIFEST} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or not isinstance(manifest.get("members"), list) \
            or not all(isinstance(m, dict) and isinstance(m.get("path"), str)
                       for m in manifest["members"]):
        raise Unreadable(f"{MANIFEST} is not a {FORMAT} manifest")
    return manifest


def _check_members(zf: zipfile.ZipFile, members: dict[str, dict[str, Any]],
                   report: Report) -> None:
    present = {i.filename for i in zf.infolist()} - {MANIFEST}
    for extra in sorted(present - members.keys()):
        report.problems.append(f"{extra}: in the archive but not in the manifest (added)")
    for name, entry in members.items():
        if not safe_member_path(name):
            report.problems.append(f"{name!r}: not a safe member path")
            continue
        if name not in present:
            report.problems.append(f"{name}: listed in the manifest but missing (removed)")
            continue
        digest, size = hashlib.sha256(), 0
        try:
            with zf.open(name) as fh:
                while chunk := fh.read(1024 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:  # a CRC error: bytes changed
            report.problems.append(f"{name}: cannot be read ({exc}): altered or damaged")
            continue
        if digest.hexdigest() != entry.get("sha256") or size != entry.get("size"):
            report.problems.append(f"{name}: SHA-256 does not match the manifest (altered)")
        else:
            report.checked.append(f"{name}: sha256 ok")


def _read_json(zf: zipfile.ZipFile, members: dict[str, dict[str, Any]], kind: str,
               report: Report) -> Any:
    found = [p for p, m in members.items() if m.get("kind") == kind]
    if not found:
        report.problems.append(f"no {kind} member in the archive")
        return None
    try:
        return json.loads(zf.read(found[0]))
    except (KeyError, ValueError, zipfile.BadZipFile, OSError) as exc:
        report.problems.append(f"{found[0]}: not readable JSON ({exc})")
        return None


def _check_chain(chain: Any, manifest: dict[str, Any], report: Report) -> None:
    try:
        meeting_id = int(chain["meeting_id"])
        entries = list(chain["entries"])
        head = chain["head"]
    except (KeyError, TypeError, ValueError):
        report.problems.append("audit chain: not in the expected shape")
        return
    prev, expected = GENESIS, 1
    for entry in entries:
        try:
            seq = int(entry["seq"])
            at = datetime.fromisoformat(entry["at"])
            digest = entry_hash(prev, meeting_id, seq, at, entry["actor_id"], entry["kind"],
                                entry["data"])
        except (KeyError, TypeError, ValueError) as exc:
            report.problems.append(f"audit chain: entry {expected} unreadable ({exc})")
            return
        if seq != expected:
            report.problems.append(f"audit chain: entry {expected} is missing (found {seq})")
            return
        if entry.get("prev_hash") != prev:
            report.problems.append(f"audit chain: entry {seq} does not link to entry {seq - 1}")
            return
        if digest != entry.get("hash"):
            report.problems.append(f"audit chain: entry {seq} was changed after it was written")
            return
        prev, expected = digest, expected + 1
    if head.get("seq") != len(entries) or head.get("hash") != prev:
        report.problems.append(f"audit chain: ends at entry {len(entries)} but its head says "
                               f"{head.get('seq')}")
        return
    recorded = manifest.get("audit_head", {})
    if recorded.get("hash") != prev or recorded.get("seq") != len(entries):
        report.problems.append("audit chain: its head is not the one the manifest records")
        return
    report.checked.append(f"audit chain: {len(entries)} entries link, head {prev[:16]}…")


def _check_minutes(zf: zipfile.ZipFile, members: dict[str, dict[str, Any]], chain: Any,
                   report: Report) -> None:
    """Each minutes file's SHA-256 is one the audit chain recorded when it was generated or
    signed: a minutes file replaced together with a recomputed manifest still fails here."""
    recorded = {e["data"].get("sha256") for e in chain.get("entries", [])
                if e.get("kind") in ("minutes_generated", "minutes_signed")
                and isinstance(e.get("data"), dict)}
    for name, entry in members.items():
        if entry.get("kind") in ("minutes", "minutes_signed"):
            if entry.get("sha256") in recorded:
                report.checked.append(f"{name}: recorded in the audit chain")
            else:
                report.problems.append(f"{name}: not the minutes the audit chain recorded")


def _check_signatures(zf: zipfile.ZipFile, members: dict[str, dict[str, Any]],
                      anchors_file: Path | None, report: Report) -> None:
    signed = [p for p, m in members.items() if m.get("kind") == "minutes_signed"]
    if not signed:
        return
    try:
        from documents.signing import load_trust_anchors, verify_pdf
    except ImportError:
        report.checked.append("signatures: pyHanko not installed, not checked")
        return
    anchors = load_trust_anchors(anchors_file) if anchors_file is not None else []
    for name in signed:
        try:
            pdf = zf.read(name)
        except (KeyError, zipfile.BadZipFile, OSError):
            continue  # already reported by the member check
        result = verify_pdf(pdf, anchors)
        if result.error:
            report.problems.append(f"{name}: {result.error}")
            continue
        for sig in result.signatures:
            if not (sig.intact and sig.valid):
                report.problems.append(f"{name}: signature {sig.field_name} ({sig.signer}) "
                                       "does not verify: the file was changed")
            elif not (sig.covers_whole_file or sig.later_changes_allowed):
                report.problems.append(f"{name}: something other than a signature was added "
                                       f"after signature {sig.field_name}")
            else:
                trust = ("trusted" if sig.trusted else "not trusted by --ca") \
                    if anchors else "trust not checked (no --ca)"
                report.checked.append(f"{name}: signature {sig.field_name} by {sig.signer} "
                                      f"intact, {trust}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m documents.archive",
                                     description="Check a Hopso meeting archive offline.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="verify an archive: hashes, audit chain, signatures")
    check.add_argument("archive", type=Path)
    check.add_argument("--ca", type=Path, help="PEM file of the CA certificates to trust")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(list(argv))
    try:
        report = verify(args.archive, args.ca)
    except Unreadable as exc:
        print(f"archive: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=1))
    else:
        for line in report.checked:
            print(f"ok       {line}")
        for line in report.problems:
            print(f"FAILED   {line}")
        print(f"{args.archive}: " + ("archive verifies" if report.ok else
                                     f"ALTERED OR DAMAGED: {len(report.problems)} problem(s)"))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
