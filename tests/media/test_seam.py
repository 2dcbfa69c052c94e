"""The server uses media/ through the package's exports only (docs/media.md, "The
server's seam"): no server module imports a media submodule or a name media/ does not
export."""

from __future__ import annotations

import ast
from pathlib import Path

import media

ROOT = Path(__file__).resolve().parents[2]


def media_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import of media or a media submodule in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and (node.module == "media" or node.module.startswith("media.")):
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names
                      if a.name == "media" or a.name.startswith("media.")]
    return found


def test_server_imports_only_what_media_exports() -> None:
    wrong = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        for line, module, names in media_imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if module != "media":
                wrong.append(f"{where} imports {module}")
            wrong += [f"{where} imports {n}, which media/__init__.py does not export"
                      for n in names if n not in media.__all__]
    assert wrong == []


def test_the_check_sees_a_submodule_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from media.link import Cascade\nfrom media import SFU\nimport media.rtp\n")
    assert media_imports(bad) == [(1, "media.link", ["Cascade"]), (2, "media", ["SFU"]),
                                  (3, "media.rtp", [])]


def test_the_layer_api_is_part_of_the_seam() -> None:
    """What the web client's per-tile choice and bandwidth allocation will call
    (docs/media.md, Simulcast) is exported, with the documented signature."""
    import inspect

    assert {"ConsumerLayers", "LayerStats"} <= set(media.__all__)
    params = inspect.signature(media.Peer.set_preferred_layers).parameters
    assert list(params) == ["self", "consumer_id", "spatial", "temporal"]
    assert params["temporal"].default is None
    assert {f for f in media.ConsumerLayers.__dataclass_fields__} == {
        "consumer_id", "spatial_layers", "current", "target", "preferred_spatial",
        "preferred_temporal", "current_temporal", "target_temporal"}
    assert callable(media.Peer.consumer_layers)
