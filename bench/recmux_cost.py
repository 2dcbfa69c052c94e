"""The mux process's CPU per recorded packet, offline (issue 16, item 7).

    .venv/bin/python bench/recmux_cost.py [--seconds 60] [--copies 5] [--profile PATH]

bench/record.py's tracks without the SFU: per copy, one VP8 log (the bench's clip, 30 fps,
split into <= 1196-byte chunks behind a 4-byte descriptor as bench/sfu_client.py's publisher
sends it, the clip restarting with its keyframe every 10 s) and one Opus log (20 ms packets),
a sender report a second in each; 5 copies make bench/record.py's 10 recorded tracks (~850
packets a second). The logs grow as a recording's do: every `--step-s` of media (default the
writer's poll, media.recorder.POLL_S: since 534073e the writer wakes the mux after each
write; before, the mux looked every 0.25 s on its own, `--step-s 0.25`), each log gets that
much more, then every log is stepped once (media/recmux.py `LogMux.step`, what `follow` does
each time it wakes), and at the end finished (files closed). Only the steps and the
finish are timed, on this thread's CPU clock (`time.thread_time`): what the mux process
spends per packet on its logs, without its idle polls or start-up (bench/record.py's
`mux_process_us_per_recorded_packet` holds those too). The files are checked with ffprobe.
`--profile PATH` writes cProfile's stats of the timed part (on the thread's clock).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from sfu_client import MAX_PAYLOAD, Publisher
from sfu_media import FPS, load_clip

from media.packetlog import append_packet, append_report, header_bytes
from media.recmux import LogMux
from media.recorder import POLL_S

SR_EVERY_S = 1.0


def track_logs(folder: Path, copies: int, seconds: float
               ) -> tuple[list[tuple[Path, list[tuple[float, bytes]]]], int]:
    """Per log: its path and its records as (arrival, encoded bytes), the header first (at
    -1); and the packets in all."""
    clip = load_clip()
    frames = [Publisher._split(f) for f in clip.vp8]
    assert max(len(c) for f in frames for c in f) <= MAX_PAYLOAD - 4
    start = 1000.0
    logs: list[tuple[Path, list[tuple[float, bytes]]]] = []
    packets = 0
    for copy in range(copies):
        for kind, codec, clock in (("video", "VP8", 90000), ("audio", "opus", 48000)):
            name = f"peer{copy}-{kind}"
            head = header_bytes({"codec": codec, "clock_rate": clock, "kind": kind,
                                 "file": f"{name}.webm", "start": start,
                                 "producer_id": name, "peer_id": f"peer{copy}",
                                 "source": "camera" if kind == "video" else "microphone"})
            records: list[tuple[float, bytes]] = [(-1.0, head)]
            ts0 = 1234 * (copy + 1)
            seq = 100 * copy
            step, count = (1 / FPS, int(seconds * FPS)) if kind == "video" \
                else (0.02, int(seconds * 50))
            next_sr = 0.0
            for i in range(count):
                t = i * step
                ts = (ts0 + round(t * clock)) & 0xFFFFFFFF
                arrival = start + 0.5 + t
                if t >= next_sr:
                    out = bytearray()
                    append_report(out, ts, arrival, 0)
                    records.append((arrival, bytes(out)))
                    next_sr += SR_EVERY_S
                if kind == "audio":
                    out = bytearray()
                    append_packet(out, seq, ts, 0x80, False, 0, arrival,
                                  clip.opus[i % len(clip.opus)])
                    records.append((arrival, bytes(out)))
                    seq += 1
                    packets += 1
                    continue
                index = i % len(frames)
                chunks = frames[index]
                pid = i & 0x7FFF
                pid_bytes = bytes((0x80 | (pid >> 8), pid & 0xFF))
                for k, chunk in enumerate(chunks):
                    descriptor = (b"\x90\x80" if k == 0 else b"\x80\x80") + pid_bytes
                    out = bytearray()
                    append_packet(out, seq, ts, 0x80 if k == len(chunks) - 1 else 0,
                                  index == 0 and k == 0, 0, arrival, descriptor + chunk)
                    records.append((arrival, bytes(out)))
                    seq += 1
                    packets += 1
            logs.append((folder / f"{name}.webm.rtplog", records))
    return logs, packets


def run(seconds: float, copies: int, profile: Path | None, step_s: float = POLL_S
        ) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="hopso-recmux-cost-"))
    try:
        logs, packets = track_logs(folder, copies, seconds)
        files = [open(path, "wb", buffering=0) for path, _ in logs]  # noqa: SIM115
        muxes = [LogMux(path) for path, _ in logs]
        cursors = [0] * len(logs)
        profiler = cProfile.Profile(time.thread_time) if profile else None
        cpu = 0.0
        steps: list[float] = []
        edge = 1000.0
        end = 1000.5 + seconds + step_s
        while edge < end:
            edge += step_s
            for i, (_, records) in enumerate(logs):  # the writer's part: not timed
                j = cursors[i]
                while j < len(records) and records[j][0] < edge:
                    j += 1
                files[i].write(b"".join(r for _, r in records[cursors[i]:j]))
                cursors[i] = j
            if profiler:
                profiler.enable()
            t0 = time.thread_time()
            for m in muxes:
                m.step()
            took = time.thread_time() - t0
            if profiler:
                profiler.disable()
            cpu += took
            steps.append(took)
        for f in files:
            f.close()
        if profiler:
            profiler.enable()
        t0 = time.thread_time()
        results = [m.finish() for m in muxes]
        finish = time.thread_time() - t0
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(profile))
        cpu += finish
        probes = []
        for r in results:
            if not r["file"]:
                probes.append({"log": Path(r["log"]).name, "error": r["failed"] or "no file"})
                continue
            probe = subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=duration",
                 "-of", "json", r["file"]], capture_output=True, text=True, timeout=60)
            info = json.loads(probe.stdout or "{}")
            probes.append({"file": Path(r["file"]).name, "frames": r["frames"],
                           "dropped_frames": r["dropped_frames"], "failed": r["failed"],
                           "codec": (info.get("streams") or [{}])[0].get("codec_name"),
                           "duration_s": float(info.get("format", {}).get("duration") or 0),
                           "ffprobe_errors": probe.stderr.strip()[:300]})
        return {"packets": packets, "seconds": seconds, "tracks": len(logs), "step_s": step_s,
                "mux_cpu_s": cpu, "finish_cpu_s": finish,
                "mux_us_per_packet": cpu / packets * 1e6,
                "step_ms_median": statistics.median(steps) * 1e3,
                "files": probes}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1, help="runs; each is reported")
    parser.add_argument("--step-s", type=float, default=POLL_S,
                        help="media between the mux's reads (0.25: its own clock before 534073e)")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = [run(args.seconds, args.copies, args.profile, args.step_s) for _ in range(args.repeat)]
    for r in runs:
        bad = [f for f in r["files"] if f.get("error") or f.get("ffprobe_errors")
               or f.get("failed")]
        print(f"{r['mux_us_per_packet']:.2f} us a packet ({r['packets']} packets, "
              f"{r['tracks']} tracks, {r['seconds']:.0f} s, read every {r['step_s']} s; "
              f"{r['mux_cpu_s']:.3f} CPU s, "
              f"finish {r['finish_cpu_s'] * 1e3:.1f} ms); files with a problem: {bad or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
