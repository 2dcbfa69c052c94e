"""Damaged signed PDFs (tests/documents/mutate.py's mutations of a file signed twice) never
make verify_pdf raise or call the damaged file intact, and each takes bounded time: the
verify route runs it on files members upload."""

from __future__ import annotations

import random
import time

from documents import signing
from documents.signing_testca import make_ca, pkcs12_for
from tests.documents import mutate
from tests.documents.signing_support import anchors, small_pdf

CA = make_ca()
TRUST = anchors(CA)
COUNT = 120  # about 6 s on a quiet machine


def test_damaged_signed_files_are_never_intact_and_never_raise() -> None:
    keys = [signing.Pkcs12Key(pkcs12_for(CA, name, "p"), "p") for name in ("A", "B")]
    once = signing.sign_pdf(small_pdf(), keys[0], field_name="ThuKy", anchors=TRUST)
    both = signing.sign_pdf(once, keys[1], field_name="ChuTri", anchors=TRUST)
    seeds = {"signed": both}
    rng = random.Random(20261207)
    slowest = 0.0
    for n in range(COUNT):
        name, mutation = rng.choice(sorted(mutate.MUTATIONS.items()))
        damaged = mutation(rng, both, seeds)
        started = time.monotonic()
        report = signing.verify_pdf(damaged, TRUST)
        slowest = max(slowest, time.monotonic() - started)
        if damaged != both:
            assert not report.intact, (n, name)
    assert slowest < 5, slowest
