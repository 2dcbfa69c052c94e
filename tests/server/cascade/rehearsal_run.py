"""The Đồng Hới rehearsal (issue 13, item 7), run by tests/server/cascade/test_rehearsal.py
in a network namespace of its own (so the WAN links' loss can be applied with iptables on
its loopback): real `run.py` processes for the province, the city and 3 wards, links
impaired, tablets at every node. Prints one JSON line: what each step saw."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from testkit.province import start_tree
from testkit.rehearsal import (
    document_phase,
    local_doc_ids,
    minutes_text,
    outage_phase,
    page_turns,
    prepare,
    search_everywhere,
    speak_phase,
    vote_round,
)


async def rehearse(root: Path, outage_s: float) -> dict[str, Any]:
    started = time.monotonic()
    tree = await start_tree(root, wards=3, preimported=True)
    out: dict[str, Any] = {"loss_not_applied": tree.loss_applied,
                           "units": [n.unit for n in tree.nodes]}
    m = None
    try:
        m = await prepare(tree, province=3, city=3, ward=3)
        out["document"] = await document_phase(tree, m, root, pages=10, size=1_000_000)
        out["search"] = await search_everywhere(tree, m, "Trang 7")
        docs = await local_doc_ids(m)
        turns = await page_turns(tree, m, docs[tree.province.unit], range(1, 4))
        out["turns"] = {"samples": len(turns), "max_ms": max(t[0] for t in turns)}
        out["speak"] = await speak_phase(tree, m)
        out["open_vote"] = await vote_round(m, "Thông qua Nghị quyết?", secret=False)
        out["secret_vote"] = await vote_round(m, "Bầu Trưởng ban?", secret=True)
        out["outage"] = await outage_phase(tree, m, docs, outage_s)
        out["minutes"] = await minutes_text(tree, m)
        out["names"] = {unit: [t.http.user["full_name"] for t in tablets if t.http]
                        for unit, tablets in m.tablets.items()}
    finally:
        await tree.close()  # every tablet opened (the chair's too), then every login
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def main() -> None:
    outage = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    with tempfile.TemporaryDirectory(prefix="hopso-rehearsal-") as root:
        result = asyncio.run(rehearse(Path(root), outage))
    print(json.dumps(result, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
