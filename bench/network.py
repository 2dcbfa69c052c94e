"""Benchmark: video and audio through the SFU on weak ward links (issue 15).

    .venv/bin/python bench/network.py [--quick] [--json PATH] [--plot DIR]

Real aiortc subscribers through Hopso's SFU (testkit/weak_links.py), each on its own emulated
link (testkit/netem.py: tc HTB rate with a 200 ms buffer, iptables random loss, in a
loopback-only network namespace the bench enters by itself with `unshare -n` as root). Two
paths, in the same run:

* simulcast + allocation (what issue 15 builds): the camera is published as browser-like VP8
  simulcast (testkit/simulcast_publisher.py over DTLS/SRTP: 160x90, 320x180 and 640x360 at
  about 100, 350 and 1,100 kbit/s, 15 fps, pre-encoded), the microphone by an aiortc client,
  and the SFU runs with `MediaConfig(bandwidth_allocation=True,
  subscriber_transport_cc=True)`: each subscriber sends transport-wide feedback as Chromium
  does (testkit/twcc_client.py), the SFU estimates its downlink from it and probes with
  padding before raising a layer (media/bwe.py, media/probe.py), and its layer follows that
  estimate; `--estimate remb`: the REMB its own aiortc receiver sends instead (abs-send-time,
  as a browser's without transport-cc; what ran before 2026-12-07 10:00). Each consumer's
  current layer, allocated layer and estimate are sampled every 0.1 s.
* single-layer (the baseline, today's path without allocation): the publisher encodes
  640x360 VP8 live at 30 fps with aiortc, whose encoder follows the REMB the SFU sends it,
  the lowest of all subscribers' estimates (a browser publisher without simulcast alike).

Profiles, one call each (one process each, run one after the other):

* clean (single-layer only): one subscriber on a clean link (the reference bitrate);
* weak_ward: a clean subscriber, then a ward on 300 kbit/s joins (simulcast: once the clean
  one is on the top layer, waiting at most 25 s, 45 s in a full run);
* rate_drop: a clean subscriber and one whose link goes 4 Mbit/s -> 500 kbit/s -> 4 Mbit/s
  (a third of the call each; simulcast: measured from when both are on the top layer, or
  after the same longest wait);
* loss5: a clean subscriber and one with 5 % random loss both ways (simulcast: full run only).

The subscribers are aiortc clients with one change: a video packet still missing 0.5 s after
its successors arrived is skipped and a keyframe requested (PLI), as a browser's packet buffer
does; aiortc alone waits for it until 512 packets later, which froze a 300 kbit/s ward for
13-17 s after one lost packet (testkit/weak_links.py, `gaps_skipped` per subscriber).

Measured at each subscriber: received video bitrate every 0.5 s, decoded frames per second,
freezes (no decoded frame for over 500 ms) per minute, audio gaps (audio missing between two
packets received in a row, in the sender's time: p99 and max; arrival-time gaps are shown too,
but the SFU and the clients share one process on a shared box, so they include its stalls:
see `loop_lag_max_ms`), and the REMB the SFU sent the publisher.

Summary (issue 15's targets, on the simulcast path; the same figures on the single-layer path
under "single_layer"): strong_high_layer_share (the share of the weak_ward call during which
the clean subscriber's consumer forwards the top layer; single-layer: the share of samples in
which the publisher's REMB, hence its one encoding, is at least 80 % of the clean subscriber's
own estimate), adapt_down_s (rate drop -> the dropping subscriber's consumer on a layer whose
measured rate plus audio fits the new rate), adapt_up_s (rate restored -> back on the top
layer), freezes_over_500ms_per_min (the worse of the weak and the dropping link),
audio_gap_p99_ms (at 5 % loss; single-layer call, and the simulcast one in a full run),
simulcast_cpu_ratio (bench/simulcast_cost.py's C fan-out measurement at 100 consumers, run
here after the calls). Prints the JSON and a table; `--json PATH` writes
`{"results": [...], "summary": {...}}`; the rate-drop plot (bitrate and layer over time)
goes to docs/plots/network_rate_drop.{svg,png} (`--plot DIR` elsewhere).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/network.py` as well as `python -m bench.network`
    sys.path.insert(0, str(ROOT))

from bench.network_plot import H, stack, svg, write
from testkit.netem import in_namespace, namespace_unavailable
from testkit.wan import own_network_namespace
from testkit.weak_links import SIM_LAYERS, SIM_LOOP_S, simulcast_media

TARGETS = {"strong_high_layer_share": 0.95, "adapt_down_s": 2.0, "adapt_up_s": 10.0,
           "freezes_over_500ms_per_min": 1.0, "audio_gap_p99_ms": 100.0,
           "simulcast_cpu_ratio": 1.2}
HIGHER_IS_BETTER = {"strong_high_layer_share"}
NO_SIMULCAST = "single-layer path: no layers to switch (REMB stand-ins beside)"
SECONDS = {"quick": {"clean": 8, "weak_ward": 15, "rate_drop": 30, "loss5": 15},
           "full": {"clean": 60, "weak_ward": 60, "rate_drop": 90, "loss5": 60}}
SIM_SECONDS = {"quick": {"weak_ward": 20, "rate_drop": 30},
               "full": {"weak_ward": 60, "rate_drop": 90, "loss5": 60}}
# The longest wait for the first subscribers to climb to the top layer before measuring (the
# receiver's estimate rises some 8 %/s: about 10-30 s from the low layer).
WARMUP_S = {"quick": 25, "full": 45}
MEDIA_CACHE = Path("/tmp") / (  # the encoded layers (about 30 s to encode on this box)
    "hopso-network-simulcast-" + "-".join(f"{w}x{h}@{b // 1000}k" for w, h, b in SIM_LAYERS)
    + f"-{SIM_LOOP_S:g}s.pkl")


def cpu_ratio(runs: int, seconds: float) -> tuple[list[dict[str, Any]], float]:
    """simulcast_cpu_ratio: bench/simulcast_cost.py's measurement (C fan-out, 100 consumers,
    single-layer and simulcast runs alternating), here in this otherwise idle process."""
    from bench.simulcast_cost import run

    rows = [{"profile": "simulcast_cost", **run(simulcast, 100, seconds)}
            for _ in range(runs) for simulcast in (False, True)]
    single, sim = (statistics.median(r["us_per_packet"] for r in rows if r["mode"] == mode)
                   for mode in ("single", "simulcast"))
    return rows, round(sim / single, 3)


def call(profile: str, seconds: float, simulcast: bool = False, sched: str = "rr",
         warmup: float = WARMUP_S["quick"], twcc: bool = True) -> dict[str, Any]:
    """One call in a process of its own; with `sched` "rr" it runs SCHED_RR priority 10 (as
    bench/sfu.py's processes): the receivers' delay-based estimators read every stall of
    their process as congestion, and on this shared box other sessions' load stalls it for
    hundreds of ms (a clean link's estimate fell to 70 kbit/s)."""
    extra = ["--simulcast", "--media-cache", str(MEDIA_CACHE),
             "--warmup", str(warmup), *(["--twcc"] if twcc else [])] \
        if simulcast else []

    def preexec() -> None:
        if sched == "rr":
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))

    run = subprocess.run([sys.executable, "-m", "testkit.weak_links", profile, str(seconds),
                          *extra], cwd=ROOT, capture_output=True, text=True,
                         timeout=seconds + 240, check=False, preexec_fn=preexec)
    if run.returncode:
        raise RuntimeError(f"{profile}: {run.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def windows(kbps: list[float], bin_s: float, width_s: float = 1.0) -> list[float]:
    n = max(1, round(width_s / bin_s))
    return [sum(kbps[i:i + n]) / n for i in range(0, len(kbps) - n + 1, n)]


def rows(call_: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    path = "simulcast" if call_.get("layers") is not None else "single"
    for name, v in call_["viewers"].items():
        link = call_["links"][name]
        rates = [f"{c['rate_bps'] / 1000:g}" for c in call_["changes"] if c["viewer"] == name]
        if rates:
            link = link.replace(" kbit/s", "->" + "->".join(rates) + " kbit/s")
        row = {"profile": call_["profile"], "path": path, "viewer": name, "link": link,
               "seconds": call_["seconds"], "loop_lag_max_ms": call_["loop_lag_max_ms"],
               **v, "remb_kbps": call_["remb_kbps"].get(name),
               "gaps_skipped": call_.get("gaps_skipped", {}).get(name),
               "keyframe_skips": call_.get("keyframe_skips", {}).get(name)}
        if path == "simulcast":
            changes = call_["layers"].get(name, [])
            row.update(top_layer_share=layer_share(changes, call_["seconds"],
                                                   call_["top_layer"]),
                       layers=changes, warmup_s=call_["warmup_s"].get(name),
                       consumer=call_["consumers"].get(name),
                       downlink_stats=call_["downlink_stats"].get(name),
                       retransmissions=call_.get("retransmissions", {}).get(name))
        out.append(row)
    publisher: dict[str, Any] = {
        "profile": call_["profile"], "path": path, "viewer": "(publisher)", "link": "clean",
        "remb_sent_kbps": call_["remb_kbps"]["publisher"], "changes": call_["changes"]}
    if path == "simulcast":
        publisher.update(layer_kbps=call_["layer_kbps"], audio_kbps=call_["audio_kbps"])
    out.append(publisher)
    return out


def layer_share(changes: list[list[Any]], seconds: float, layer: int) -> float | None:
    """The share of [0, seconds] during which the current layer (sampled as change rows
    [t, current, allocated, estimate]) was `layer`."""
    if not changes:
        return None
    on, edges = 0.0, [*changes, [seconds, None, None, None]]
    for (t, current, *_), (t_next, *_) in itertools.pairwise(edges):
        if current == layer:
            on += max(0.0, min(t_next, seconds) - max(t, 0.0))
    return round(on / seconds, 3)


def layer_at(changes: list[list[Any]], t: float) -> int | None:
    current = None
    for row in changes:
        if row[0] > t:
            break
        current = row[1]
    return current


def adapt_times(call_: dict[str, Any]) -> dict[str, Any]:
    """adapt_down_s: from the rate drop to the dropping subscriber's consumer forwarding a
    layer whose measured rate plus audio fits the new link rate; adapt_up_s: from the
    restore to the top layer again. None (with the reason) when it did not happen."""
    changes = call_["layers"].get("dropping", [])
    (drop, low), (restore, _) = ((c["at_s"], c["rate_bps"] / 1000) for c in call_["changes"])
    layer_kbps, audio = call_["layer_kbps"], call_["audio_kbps"] or 0
    top = call_["top_layer"]
    fits = {n for n, k in enumerate(layer_kbps) if k is not None and k + audio <= low}
    out: dict[str, Any] = {"layer_before_drop": layer_at(changes, drop),
                           "layers_fitting_500k": sorted(fits)}

    def first(start: float, end: float, ok: Any) -> float | None:
        if ok(layer_at(changes, start)):
            return 0.0
        for t, current, *_ in changes:
            if start < t <= end and ok(current):
                return round(t - start, 2)
        return None

    out["adapt_down_s"] = first(drop, restore, lambda layer: layer in fits)
    if out["layer_before_drop"] in fits:  # nothing to adapt: no figure
        out["adapt_down_s"] = None
        out["adapt_down_s_reason"] = (f"already on a layer that fits at the drop (layer "
                                      f"{out['layer_before_drop']}: the top layer was not "
                                      f"reached before it)")
        out["down_to_low_layer_s"] = first(drop, restore, lambda layer: layer == 0)
    elif out["adapt_down_s"] is None:
        out["adapt_down_s_reason"] = f"no fitting layer within {restore - drop:g} s"
    out["adapt_up_s"] = first(restore, call_["seconds"], lambda layer: layer == top)
    if out["adapt_up_s"] is None:
        out["adapt_up_s_reason"] = (f"not back on the top layer within "
                                    f"{call_['seconds'] - restore:g} s")
    return out


def remb_times(call_: dict[str, Any]) -> dict[str, float | None]:
    """Single-layer stand-ins for adapt_down/up: after the drop, seconds until the REMB the
    SFU sends the publisher is under the new link rate; after the restore, until it is back
    to 80 % of what it was before the drop."""
    sent = call_["remb_kbps"]["publisher"]
    drop, restore = (c["at_s"] for c in call_["changes"])
    bin_s = call_["bin_s"]
    before = [k for k in sent[:int(drop / bin_s)] if k is not None]
    ref = statistics.median(before) if before else None

    def first(start: float, ok: Any) -> float | None:
        for i in range(int(start / bin_s), len(sent)):
            if sent[i] is not None and ok(sent[i]):
                return round(i * bin_s - start, 1)
        return None

    if ref is None or ref < 625:  # already about the new 500 kbit/s: no step to time (on a
        # loaded box the delay-based estimate reads CPU stalls as congestion)
        return {"remb_under_link_after_drop_s": None, "remb_back_after_restore_s": None,
                "remb_before_drop_kbps": ref}
    return {"remb_under_link_after_drop_s": first(drop, lambda k: k < 500),
            "remb_back_after_restore_s": None if ref is None else first(
                restore, lambda k: k >= 0.8 * ref)}


def top_share(call_: dict[str, Any]) -> float | None:
    """strong_high_layer_share on the single-layer path: the clean subscriber has "the top
    layer" while the publisher's one encoding is not held under what that subscriber itself
    can take, i.e. the REMB the SFU sends the publisher is at least 80 % of the clean
    subscriber's own REMB. (Its received bitrate against the clean profile's would also move
    with this shared box's load: the delay-based estimate reads CPU stalls as congestion.)"""
    sent, own = call_["remb_kbps"]["publisher"], call_["remb_kbps"].get("strong") or []
    pairs = [(s, o) for s, o in zip(sent, own, strict=False) if s is not None and o is not None]
    return round(sum(s >= 0.8 * o for s, o in pairs) / len(pairs), 2) if pairs else None


def single_summary(calls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    clean = calls["clean"]["viewers"]["strong"]
    bin_s = calls["clean"]["bin_s"]
    top = statistics.median(windows(clean["video_kbps"], bin_s))
    strong = windows(calls["weak_ward"]["viewers"]["strong"]["video_kbps"], bin_s)
    ward = calls["weak_ward"]["viewers"]["ward"]
    dropping = calls["rate_drop"]["viewers"]["dropping"]
    return {
        "strong_high_layer_share": top_share(calls["weak_ward"]),
        "strong_kbps_clean": round(top),
        "strong_kbps_with_weak_ward": round(statistics.median(strong)),
        "adapt_down_s": None, "adapt_down_s_reason": NO_SIMULCAST,
        "adapt_up_s": None, "adapt_up_s_reason": NO_SIMULCAST,
        **remb_times(calls["rate_drop"]),
        "freezes_over_500ms_per_min": max(ward["freezes_over_500ms_per_min"],
                                          dropping["freezes_over_500ms_per_min"]),
        "freezes_weak_ward_per_min": ward["freezes_over_500ms_per_min"],
        "freezes_rate_drop_per_min": dropping["freezes_over_500ms_per_min"],
        "audio_gap_p99_ms": calls["loss5"]["viewers"]["lossy"]["audio_gap_p99_ms"],
    }


def simulcast_summary(sim: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ward_call, drop_call = sim["weak_ward"], sim["rate_drop"]
    ward = ward_call["viewers"]["ward"]
    dropping = drop_call["viewers"]["dropping"]
    bin_s = ward_call["bin_s"]
    out: dict[str, Any] = {
        "strong_high_layer_share": layer_share(ward_call["layers"].get("strong", []),
                                               ward_call["seconds"], ward_call["top_layer"]),
        "strong_kbps_with_weak_ward": round(statistics.median(windows(
            ward_call["viewers"]["strong"]["video_kbps"], bin_s))),
        "ward_kbps": round(statistics.median(windows(ward["video_kbps"], bin_s))),
        "ward_low_layer_share": layer_share(ward_call["layers"].get("ward", []),
                                            ward_call["seconds"], 0),
        "strong_warmup_s": ward_call["warmup_s"].get("strong"),
        **adapt_times(drop_call),
        "freezes_over_500ms_per_min": max(ward["freezes_over_500ms_per_min"],
                                          dropping["freezes_over_500ms_per_min"]),
        "freezes_weak_ward_per_min": ward["freezes_over_500ms_per_min"],
        "freezes_rate_drop_per_min": dropping["freezes_over_500ms_per_min"],
        "layer_kbps": drop_call["layer_kbps"], "audio_kbps": drop_call["audio_kbps"],
    }
    if "loss5" in sim:
        out["audio_gap_p99_ms_simulcast"] = sim["loss5"]["viewers"]["lossy"]["audio_gap_p99_ms"]
    return out


def met(summary: dict[str, Any]) -> dict[str, bool | None]:
    return {key: None if summary.get(key) is None else (
        summary[key] >= target if key in HIGHER_IS_BETTER else summary[key] <= target)
        for key, target in TARGETS.items()}


def summarize(calls: dict[str, dict[str, Any]],
              sim: dict[str, dict[str, Any]]) -> dict[str, Any]:
    single = single_summary(calls)
    single["met"] = met(single)
    summary = simulcast_summary(sim)
    summary["audio_gap_p99_ms"] = max(  # audio: the worse of the two paths' lossy subscriber
        (v for v in (single["audio_gap_p99_ms"], summary.get("audio_gap_p99_ms_simulcast"))
         if v is not None), default=None)
    summary.update(path="simulcast + bandwidth allocation", single_layer=single,
                   targets=TARGETS)
    summary["met"] = met(summary)
    return summary


def plot(call_: dict[str, Any], single: dict[str, Any], out_dir: Path,
         estimate: str = "twcc") -> str | None:
    """The rate-drop profile: bitrate (both paths) over time above, layers below;
    `estimate` names the simulcast path's downlink estimate (`--estimate`)."""
    bin_s = call_["bin_s"]

    def timeline(values: list[float | None]) -> list[tuple[float, float | None]]:
        return [(i * bin_s, v) for i, v in enumerate(values)]

    def steps(changes: list[list[Any]], column: int) -> list[tuple[float, float | None]]:
        points: list[tuple[float, float | None]] = []
        for row in changes:
            if points and points[-1][1] is not None and row[column] is not None:
                points.append((row[0], points[-1][1]))
            points.append((row[0], row[column]))
        if points:
            points.append((call_["seconds"], points[-1][1]))
        return points

    drop, restore = (c["at_s"] for c in call_["changes"])
    seconds = call_["seconds"]
    link: list[tuple[float, float | None]] = [
        (0.0, 4000.0), (drop, 4000.0), (drop, 500.0), (restore, 500.0), (restore, 4000.0),
        (seconds, 4000.0)]
    estimate = steps(call_["layers"].get("dropping", []), 3)
    estimated = f"its estimate ({'transport-cc' if estimate == 'twcc' else 'REMB'})"
    rates: dict[str, list[tuple[float, float | None]]] = {
        "clean subscriber": timeline(call_["viewers"]["strong"]["video_kbps"]),
        "dropping subscriber": timeline(call_["viewers"]["dropping"]["video_kbps"]),
        estimated: estimate,
        "dropping link rate": link,
        "single-layer, dropping": timeline(single["viewers"]["dropping"]["video_kbps"]),
    }
    top = svg(f"Rate drop 4 Mbit/s -> 500 kbit/s -> 4 Mbit/s ({seconds:g} s): video kbit/s "
              "received, simulcast + allocation", rates,
              dashed=frozenset({estimated, "dropping link rate",
                                "single-layer, dropping"}))
    names = [f"{w}x{h}" for w, h, _ in SIM_LAYERS]
    layers = {
        "clean: forwarded": steps(call_["layers"].get("strong", []), 1),
        "dropping: forwarded": steps(call_["layers"].get("dropping", []), 1),
        "dropping: allocated": steps(call_["layers"].get("dropping", []), 2),
    }
    bottom = svg("Layer forwarded to each subscriber (allocated: dashed; gap = paused)",
                 layers, dashed=frozenset({"dropping: allocated"}), y_label="layer",
                 y_ticks={float(n): name for n, name in enumerate(names)})
    return write(stack(top, bottom), out_dir / "network_rate_drop.svg",
                 out_dir / "network_rate_drop.png", height=2 * H)


def calls_from(results: list[dict[str, Any]], path: str, profile: str) -> dict[str, Any]:
    """What plot() needs of one call, back from a run's JSON rows."""
    rows_ = [r for r in results if r.get("path") == path and r.get("profile") == profile]
    publisher = next(r for r in rows_ if r["viewer"] == "(publisher)")
    viewers = [r for r in rows_ if r["viewer"] != "(publisher)"]
    return {"bin_s": 0.5, "seconds": viewers[0]["seconds"], "changes": publisher["changes"],
            "viewers": {r["viewer"]: r for r in viewers},
            "layers": {r["viewer"]: r.get("layers") or [] for r in viewers}}


def table(results: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = [f"{'profile':<10} {'path':<9} {'viewer':<9} {'link':<22} {'kbps':>6} {'fps':>5} "
             f"{'frz/min':>7} {'longest':>8} {'aud p99':>7} {'top %':>5} {'lag':>5}"]
    for r in results:
        if r.get("viewer", "(").startswith("("):
            continue
        share = r.get("top_layer_share")
        lines.append(f"{r['profile']:<10} {r['path']:<9} {r['viewer']:<9} {r['link']:<22} "
                     f"{r['video_kbps_mean']:>6.0f} {r['video_fps']:>5.1f} "
                     f"{r['freezes_over_500ms_per_min']:>7.1f} {r['longest_freeze_ms']:>6}ms "
                     f"{r['audio_gap_p99_ms'] or 0:>7.0f} "
                     f"{'-' if share is None else round(share * 100):>5} "
                     f"{r['loop_lag_max_ms']:>5}")
    lines.append("")
    single = summary["single_layer"]
    lines.append(f"{'':<28} {'simulcast':>9} {'single':>8}  target")
    for key, target in TARGETS.items():
        value, verdict = summary.get(key), summary["met"].get(key)
        mark = "n/a" if verdict is None else ("met" if verdict else "MISSED")
        lines.append(f"{key:<28} {value!s:>9} {single.get(key)!s:>8}  {target:<5} {mark}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter calls (about 3 min)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "plots")
    parser.add_argument("--sched", choices=("rr", "normal"), default="rr",
                        help="the calls' scheduling: SCHED_RR priority 10 (root) or normal")
    parser.add_argument("--estimate", choices=("twcc", "remb"), default="twcc",
                        help="the simulcast path's downlink estimate: the SFU's own from "
                             "transport-cc feedback, with padding probes, or the REMB")
    parser.add_argument("--replot", type=Path, metavar="JSON",
                        help="only draw the plot again from a run's JSON")
    args = parser.parse_args()
    if args.replot:
        run = json.loads(args.replot.read_text())
        results = run["results"]
        print(plot(calls_from(results, "simulcast", "rate_drop"),
                   calls_from(results, "single", "rate_drop"), args.plot,
                   run["summary"].get("estimate", "remb")) or "written")
        return 0
    if not own_network_namespace():
        reason = namespace_unavailable()
        if reason:
            print(f"bench/network.py needs a network namespace of its own: {reason}",
                  file=sys.stderr)
            return 2
        argv = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
        return subprocess.run(in_namespace(argv), check=False).returncode
    started = time.monotonic()
    load = os.getloadavg()[0]
    mode = "quick" if args.quick else "full"
    simulcast_media(MEDIA_CACHE)  # encoded once, before the calls
    calls = {name: call(name, s, sched=args.sched) for name, s in SECONDS[mode].items()}
    sim = {name: call(name, s, simulcast=True, sched=args.sched, warmup=WARMUP_S[mode],
                      twcc=args.estimate == "twcc")
           for name, s in SIM_SECONDS[mode].items()}
    results = [row for c in [*calls.values(), *sim.values()] for row in rows(c)]
    summary = summarize(calls, sim)
    cost, summary["simulcast_cpu_ratio"] = cpu_ratio(2 if args.quick else 5,
                                                     1.0 if args.quick else 3.0)
    results += cost
    summary["met"]["simulcast_cpu_ratio"] = summary["simulcast_cpu_ratio"] <= TARGETS[
        "simulcast_cpu_ratio"]
    summary["plot"] = plot(sim["rate_drop"], calls["rate_drop"], args.plot, args.estimate) or str(
        (args.plot / "network_rate_drop.png").relative_to(ROOT)
        if args.plot.is_relative_to(ROOT) else args.plot / "network_rate_drop.png")
    summary.update(quick=args.quick, sched=args.sched, estimate=args.estimate,
                   wall_s=round(time.monotonic() - started),
                   load_avg_start=round(load, 1), load_avg_end=round(os.getloadavg()[0], 1))
    out = {"results": results, "summary": summary}
    print(json.dumps(out))
    print(table(results, summary))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
