"""The conversion's child: limits, the package's links removed, then LibreOffice.

Started by documents.office as ``[sandbox…] python -m documents._office_child '<json>'``,
inside the network namespace, so the untrusted package is parsed (documents.office_links)
in a process with no network, resource limits and no share of the server's event loop;
then this process becomes ``soffice`` (exec: same pid, same limits, same process group).

Exit status 3 with ``report.json`` {"rejected": detail} when the package is refused; else
the report holds {"removed": {...}} and the exit status is LibreOffice's.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from documents import office_links
from documents.errors import DocumentRejected
from documents.validation import FileKind

EXIT_REJECTED = 3
_PR_SET_PDEATHSIG = 1

# LibreOffice's own settings (profile/user/registrymodifications.xcu), so that even in a
# package we could not rewrite (.doc/.xls/.ppt) nothing linked is loaded and no macro runs:
# - BlockUntrustedRefererLinks: links of a document outside the trusted locations (there
#   are none) are not resolved: linked images, OLE links, sections, auto-reload;
# - Writer and Calc never update links on load (Writer 0 = never; Calc 1 = never);
# - macros: security level 3 (very high, trusted locations only) and execution disabled;
# - every http(s) request goes to a proxy at 127.0.0.1:9 (discard), which nothing answers:
#   the Word 97 importer fetches a .doc's linked picture whatever the settings above say.
PROFILE_XCU = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" \
xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">\
<prop oor:name="BlockUntrustedRefererLinks" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">\
<prop oor:name="MacroSecurityLevel" oor:op="fuse"><value>3</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">\
<prop oor:name="DisableMacrosExecution" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Writer/Content/Update">\
<prop oor:name="Link" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Content/Update">\
<prop oor:name="Link" oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Inet/Settings">\
<prop oor:name="ooInetProxyType" oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Inet/Settings">\
<prop oor:name="ooInetHTTPProxyName" oor:op="fuse"><value>127.0.0.1</value></prop></item>
<item oor:path="/org.openoffice.Inet/Settings">\
<prop oor:name="ooInetHTTPProxyPort" oor:op="fuse"><value>9</value></prop></item>
<item oor:path="/org.openoffice.Inet/Settings">\
<prop oor:name="ooInetHTTPSProxyName" oor:op="fuse"><value>127.0.0.1</value></prop></item>
<item oor:path="/org.openoffice.Inet/Settings">\
<prop oor:name="ooInetHTTPSProxyPort" oor:op="fuse"><value>9</value></prop></item>
<item oor:path="/org.openoffice.Inet/Settings">\
<prop oor:name="ooInetNoProxy" oor:op="fuse"><value></value></prop></item>
</oor:items>
"""


@dataclass(frozen=True)
class ChildConfig:
    source: str  # the upload, as stored
    kind: str  # FileKind value
    input: str  # where the rewritten package goes (LibreOffice converts this)
    profile: str  # LibreOffice user installation dir (fresh, private)
    report: str  # JSON written here before exec
    argv: list[str]  # soffice and its arguments
    memory_bytes: int  # RLIMIT_AS
    file_bytes: int  # RLIMIT_FSIZE: largest file any of them may write
    cpu_seconds: int  # RLIMIT_CPU, per process (the wall-clock timeout is the parent's)
    max_unpacked: int
    nice: int = 10

    def to_argv(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_argv(cls, text: str) -> ChildConfig:
        return cls(**json.loads(text))


def write_profile(profile: Path) -> None:
    """A LibreOffice user installation holding only our hardened settings."""
    user = profile / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(PROFILE_XCU, encoding="utf-8")


def _limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    cap = value if hard == resource.RLIM_INFINITY else min(hard, value)
    resource.setrlimit(which, (cap, cap))


def main(cfg: ChildConfig) -> None:
    _limit(resource.RLIMIT_CORE, 0)  # a core dump would be the document's content on disk
    _limit(resource.RLIMIT_AS, cfg.memory_bytes)
    _limit(resource.RLIMIT_FSIZE, cfg.file_bytes)
    _limit(resource.RLIMIT_CPU, cfg.cpu_seconds)
    os.nice(cfg.nice)
    try:  # Linux: die with the server instead of converting for nobody
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    report = Path(cfg.report)
    try:
        found = office_links.neutralise(Path(cfg.source), Path(cfg.input), FileKind(cfg.kind),
                                        cfg.max_unpacked)
    except DocumentRejected as exc:
        report.write_text(json.dumps({"rejected": exc.detail}), encoding="utf-8")
        sys.exit(EXIT_REJECTED)
    write_profile(Path(cfg.profile))
    report.write_text(json.dumps({"removed": found.as_dict()}), encoding="utf-8")
    sys.stdout.flush()
    os.execv(cfg.argv[0], cfg.argv)


if __name__ == "__main__":
    main(ChildConfig.from_argv(sys.argv[1]))
