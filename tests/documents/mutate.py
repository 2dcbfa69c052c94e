"""Seeded PDF mutator for the hostile-file fuzz test (tests/documents/test_pdf_fuzz.py).

Takes valid PDFs (those the tests already make, plus small generated ones, plain and
with object streams) and damages them the way broken writers and attackers do: truncation,
bit flips, xref and trailer corruption, huge and negative numbers, deep nesting, bogus
object streams, broken stream lengths, renamed keys, spliced files. Everything follows
from the seed, so a failure names a reproducible (seed, index).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pymupdf

from tests.documents import corpus

_INT = re.compile(rb"(?<![\w.#/])-?\d+(?![\w.])")
_NAME = re.compile(rb"/[A-Za-z][A-Za-z0-9]*")
HUGE = [b"9223372036854775808", b"-9223372036854775809", b"2147483648", b"-1", b"0",
        b"99999999999999999999999999999999", b"1e308", b"-0.0", b"4294967295", b"65536",
        b"3.4e38", b"NaN"]
NAMES = [b"/Page", b"/Pages", b"/Kids", b"/Count", b"/Parent", b"/Type", b"/Length",
         b"/Filter", b"/FlateDecode", b"/ObjStm", b"/XRef", b"/N", b"/First", b"/Root",
         b"/Contents", b"/Resources", b"/MediaBox", b"/Annots", b"/Font", b"/Subtype",
         b"/Rotate", b"/UserUnit", b"/DecodeParms", b"/Predictor", b"/Prev", b"/Size"]


@dataclass(frozen=True)
class Mutant:
    name: str  # "<seed file>:<mutation>:<index>"
    data: bytes


def seed_files(directory: Path) -> dict[str, bytes]:
    """Valid PDFs the suite already uses, plus small generated ones."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = {
        "text": corpus.make_text_pdf(directory, pages=2).read_bytes(),
        "active": corpus.make_active_content_pdf(directory).read_bytes(),
        "box": corpus.make_page_box_pdf(directory, "s", b"/MediaBox[0 0 612 792]").read_bytes(),
        "paths": corpus.make_many_paths_pdf(directory, segments=200).read_bytes(),
    }
    # The same documents with object streams and an xref stream, compressed and not.
    for name in ("text", "active"):
        with pymupdf.open("pdf", seeds[name]) as doc:
            seeds[f"{name}-objstm"] = doc.tobytes(use_objstms=1, garbage=3, deflate=True)
            seeds[f"{name}-plain"] = doc.tobytes(garbage=1, expand=255)
    return seeds


def truncate(rng: random.Random, data: bytes, _: dict[str, bytes]) -> bytes:
    return data[: rng.randrange(len(data))]


def bit_flips(rng: random.Random, data: bytes, _: dict[str, bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 2, 8, 64])):
        at = rng.randrange(len(out))
        out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def byte_runs(rng: random.Random, data: bytes, _: dict[str, bytes]) -> bytes:
    """Overwrite, insert or delete a run of bytes somewhere."""
    at = rng.randrange(len(data))
    run = rng.randbytes(rng.randrange(1, 64))
    how = rng.randrange(3)
    if how == 0:
        return data[:at] + run + data[at + len(run):]
    if how == 1:
        return data[:at] + run + data[at:]
    return data[:at] + data[at + rng.randrange(1, 512):]


def xref_trailer(rng: random.Random, data: bytes, _: dict[str, bytes]) -> bytes:
    """Point startxref elsewhere, damage xref entries, drop or garble the trailer."""
    how = rng.randrange(5)
    if how == 0:
        return re.sub(rb"startxref\s+\d+", b"startxref %d" % rng.randrange(-10, 2 * len(data)),
                      data)
    if how == 1:  # shift some xref offsets
        def shift(m: re.Match[bytes]) -> bytes:
            if rng.random() < 0.5:
                return m.group(0)
            return b"%010d" % max(0, int(m.group(1)) + rng.randrange(-50, 50)) + m.group(2)
        return re.sub(rb"(\d{10})( \d{5} [nf])", shift, data)
    if how == 2:
        return re.sub(rb"trailer\s*<<.*?>>", b"trailer\n<<>>", data, flags=re.S)
    if how == 3:
        return data.replace(b"/Root", rng.choice([b"/Roo", b"/Info", b"/Root 999 0 R/X"]), 1)
    return re.sub(rb"/Size \d+", b"/Size %d" % rng.choice([0, 1, 2**31, 2**40]), data)


def huge_numbers(rng: random.Random, data: bytes, _: dict[str, bytes]) -> bytes:
    spots = list(_INT.finditer(data))
    if not spots:
        return data
    out = data
    for m in sorted(rng.sample(spots, min(len(spots), rng.choice([1, 3, 10]))),
                    key=lambda m: -m.start()):
        out = out[: m.start()] + rng.choice(HUGE) + out[m.end():]
    return out


_KEYED = re.compile(
    rb"/(Count|MediaBox|CropBox|Rotate|UserUnit|Length|N|First|W|Index|Size|Prev|Width|Height"
    rb"|BitsPerComponent|Columns|Predictor|Colors|Kids|Parent|Contents|Resources|Filter)"
    rb"(\s*)(\[[^\]]*\]|-?[\d.]+(?:\s+\d+\s+R)?|/\w+|<<)")
HOSTILE_VALUES = [
    *HUGE, b"[0 0 1 100000]", b"[0 0 100000 1]", b"[0 0 -5 -5]", b"[1e38 1e38 -1e38 -1e38]",
    b"[]", b"[0 0 0 0]", b"[1 2 3]", b"null", b"(x)", b"/Foo", b"[1 0 R]", b"2 0 R",
    b"[2 0 R 2 0 R]", b"<<>>", b"[0 0 612 792 5 6]", b"90000000000000000000", b"7",
]


def key_values(rng: random.Random, data: bytes, _: dict[str, bytes]) -> bytes:
    """Give a structural key (/Count, /MediaBox, /Length, /W, /Predictor, ...) a hostile
    value: where the interesting failures of readers are."""
    spots = list(_KEYED.finditer(data))
    if not spots:
        return data
    out = data
    for m in sorted(rng.sample(spots, min(len(spots), rng.choice([1, 1, 2, 4]))),
                    key=lambda m: -m.start()):
        value = rng.choice(HOSTILE_VALUES)
        out = out[: m.start(3)] + (value + b" <<" if m.group(3) == b"<<" else value) + \
            out[m.end(3):]
    return out


_OPERAND = re.compile(rb"(-?[\d.]+)(\s+)(?=(?:-?[\d.]+\s+)*(?:cm|re|Tf|w|Tz|TL|Td|m|l|c)\b)")


def content_numbers(rng: random.Random, data: bytes, _: dict[str, bytes]) -> bytes:
    """Huge or degenerate operands in (uncompressed) content streams: matrices, widths,
    font sizes, paths."""
    spots = list(_OPERAND.finditer(data))
    if not spots:
        return data
    out = data
    for m in sorted(rng.sample(spots, min(len(spots), rng.choice([1, 4, 16]))),
                    key=lambda m: -m.start()):
        out = out[: m.start(1)] + rng.choice(HUGE + [b"1e-30", b"100000"]) + out[m.end(1):]
    return out


def rename_keys(rng: random.Random, data: bytes, _: dict[str, bytes]) -> bytes:
    spots = list(_NAME.finditer(data))
    if not spots:
        return data
    m = rng.choice(spots)
    return data[: m.start()] + rng.choice(NAMES) + data[m.end():]


def deep_nesting(rng: random.Random, data: bytes, _: dict[str, bytes]) -> bytes:
    """Bury a deeply nested array or dictionary in an object (and maybe leave it open)."""
    depth = rng.choice([500, 5_000, 50_000])
    opener, closer = rng.choice([(b"[", b"]"), (b"<</A ", b">>")])
    nest = opener * depth + b"1" + (closer * depth if rng.random() < 0.7 else b"")
    spots = [m.end() for m in re.finditer(rb"<<", data)]
    at = rng.choice(spots) if spots else len(data) // 2
    return data[:at] + b"/Deep " + nest + b" " + data[at:]


def stream_lengths(rng: random.Random, data: bytes, _: dict[str, bytes]) -> bytes:
    """Lie about /Length, or lose an endstream/endobj."""
    if rng.random() < 0.5:
        return re.sub(rb"/Length \d+", lambda _: b"/Length %d" % rng.choice(
            [0, 1, 10**9, 2**63 - 1, 7]), data, count=rng.randrange(1, 4))
    token = rng.choice([b"endstream", b"endobj", b"stream", b"obj"])
    spots = [m.start() for m in re.finditer(re.escape(token), data)]
    if not spots:
        return data
    at = rng.choice(spots)
    return data[:at] + data[at + len(token):]


def bogus_object_stream(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    """An object stream whose /N, /First or offset table lies."""
    body = b" ".join(b"%d %d" % (i + 1, rng.choice([0, 5, 10**6, -3])) for i in range(4))
    objs = b"<</Type/Page>> 42 (x) [1 2"
    content = body + b" " + objs
    first = rng.choice([len(body) + 1, 0, 10**9, -1])
    count = rng.choice([4, 0, 2**31, -1, 10**6])
    stream = (b"<</Type/ObjStm/N %d/First %d/Length %d>>stream\n" % (count, first, len(content))
              + content + b"\nendstream")
    at = data.rfind(b"xref")
    at = at if at > 0 else len(data)
    return data[:at] + b"999 0 obj\n" + stream + b"\nendobj\n" + data[at:]


def splice(rng: random.Random, data: bytes, seeds: dict[str, bytes]) -> bytes:
    other = rng.choice(list(seeds.values()))
    a, b = sorted(rng.randrange(len(data)) for _ in range(2))
    c = rng.randrange(len(other))
    return data[:a] + other[c: c + (b - a)] + data[b:]


MUTATIONS: dict[str, Callable[[random.Random, bytes, dict[str, bytes]], bytes]] = {
    "truncate": truncate, "bits": bit_flips, "runs": byte_runs, "xref": xref_trailer,
    "numbers": huge_numbers, "keys": rename_keys, "nesting": deep_nesting,
    "lengths": stream_lengths, "objstm": bogus_object_stream, "splice": splice,
    "values": key_values, "values2": key_values, "values3": key_values,  # 3x as likely
    "content": content_numbers,
}


def mutants(seeds: dict[str, bytes], seed: int) -> Iterator[Mutant]:
    """An endless, reproducible stream of damaged PDFs (1-3 mutations each)."""
    rng = random.Random(seed)
    names = sorted(seeds)
    for index in range(10**9):
        source = rng.choice(names)
        data = seeds[source]
        steps = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            step = rng.choice(sorted(MUTATIONS))
            data = MUTATIONS[step](rng, data, seeds) or b"%PDF-"
            steps.append(step)
        if b"%PDF-" not in data[:1024]:
            data = b"%PDF-1.7\n" + data  # keep it past the magic check, into the pipeline
        yield Mutant(f"{source}:{'+'.join(steps)}:{seed}/{index}", data)
