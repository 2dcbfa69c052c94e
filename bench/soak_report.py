"""bench/soak.py's report: its samples in windows, the summary judged against the targets
(first minute after the warm-up vs the last) and the table it prints. The module doc of
bench/soak.py says what is measured and why these targets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WINDOW_S = 10.0
WARMUP_S = 60.0
TARGETS = {"memory_drift_pct": 10.0, "fd_growth_pct": 2.0, "fd_growth_min": 5,
           "p95_growth_factor": 1.5}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    data = sorted(values)
    return data[min(len(data) - 1, max(0, math.ceil(q / 100 * len(data)) - 1))]


def r1(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class Sample:
    t: float
    rss_mb: float
    fds: int
    cpu_pct: float
    cpu_wait_pct: float  # threads runnable but waiting for a CPU (a contended machine)
    workers_rss_mb: float
    clients_cpu_pct: float
    loop_lag_p99_ms: float | None
    load_avg_1m: float


def windows(start: float, end: float, samples: list[Sample], tablet_reports: list[dict[str, Any]],
            media_reports: list[dict[str, Any]], turns_sent: dict[int, float]
            ) -> list[dict[str, Any]]:
    """One row per WINDOW_S: the ack and page-turn p95s of the operations sent in it
    (`turns_sent`: a page turn's seq -> when the presenter sent it), the server sample and
    the viewers' report nearest its end."""
    n = max(1, int((end - start) // WINDOW_S))
    acks: list[list[float]] = [[] for _ in range(n)]
    turns: list[list[float]] = [[] for _ in range(n)]

    def slot(t: float) -> int | None:
        i = int((t - start) // WINDOW_S)
        return i if 0 <= i < n else None

    for report in tablet_reports:
        for sent, ms in report["acks"]:
            if (i := slot(sent)) is not None:
                acks[i].append(ms)
        for seq, at in report["turns"]:
            sent = turns_sent.get(seq)
            if sent is not None and (i := slot(sent)) is not None:
                turns[i].append((at - sent) * 1000)
    out = []
    for i in range(n):
        hi = start + (i + 1) * WINDOW_S
        sample = nearest(samples, hi, lambda s: s.t)
        media = nearest(media_reports, hi, lambda m: m["t"])
        row: dict[str, Any] = {
            "t_s": round((i + 1) * WINDOW_S), "acks": len(acks[i]),
            "ack_p95_ms": r1(pct(acks[i], 95)), "page_turn_deliveries": len(turns[i]),
            "page_turn_p95_ms": r1(pct(turns[i], 95))}
        if sample is not None:
            row.update({"rss_mb": round(sample.rss_mb, 1), "fds": sample.fds,
                        "cpu_pct": round(sample.cpu_pct),
                        "cpu_wait_pct": round(sample.cpu_wait_pct), "workers_rss_mb":
                        round(sample.workers_rss_mb, 1), "clients_cpu_pct":
                        round(sample.clients_cpu_pct), "loop_lag_p99_ms": sample.loop_lag_p99_ms,
                        "load_avg_1m": round(sample.load_avg_1m, 2)})
        if media is not None:
            fps = media["fps"]
            row.update({"viewers": len(fps), "viewer_fps_min": min(fps, default=0.0),
                        "viewer_fps_median": pct(fps, 50),
                        "video_loss_pct": round(100 * media["lost"] / max(1, media["expected"]), 3)})
        out.append(row)
    return out


def nearest(items: list[Any], t: float, at: Any) -> Any:
    """The item whose time is closest to `t`, if within half a window."""
    best = min(items, key=lambda item: abs(at(item) - t), default=None)
    return best if best is not None and abs(at(best) - t) <= WINDOW_S / 2 else None


def summarize(rows: list[dict[str, Any]], all_acks: dict[str, list[tuple[float, float]]],
              minutes: float) -> dict[str, Any]:
    """First minute after warm-up vs last minute."""
    first = [r for r in rows if WARMUP_S < r["t_s"] <= WARMUP_S + 60]
    last = [r for r in rows if r["t_s"] > minutes * 60 - 60]

    def mean(rs: list[dict[str, Any]], key: str) -> float | None:
        vals = [r[key] for r in rs if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    def top(rs: list[dict[str, Any]], key: str) -> float | None:
        vals = [r[key] for r in rs if r.get(key) is not None]
        return max(vals) if vals else None

    rss0, rss1 = mean(first, "rss_mb"), mean(last, "rss_mb")
    fd0, fd1 = top(first, "fds"), top(last, "fds")
    drift = None if not rss0 or rss1 is None else 100 * (rss1 - rss0) / rss0
    fd_allowed = None if fd0 is None else max(TARGETS["fd_growth_min"],
                                              fd0 * TARGETS["fd_growth_pct"] / 100)
    p95: dict[str, Any] = {}
    after = [r for r in rows if r["t_s"] > WARMUP_S]
    for key, values in all_acks.items():
        column = f"{key}_p95_ms"
        # Per-window p95s, their median over each minute: a drift shows, while one window
        # stalled by something else on the machine does not decide it either way (those
        # windows are listed as spikes).
        a = pct([r[column] for r in first if r.get(column) is not None], 50)
        b = pct([r[column] for r in last if r.get(column) is not None], 50)
        typical = pct([r[column] for r in after if r.get(column) is not None], 50)
        p95[key] = {"first_minute_ms": r1(a), "last_minute_ms": r1(b),
                    "pooled_first_minute_ms": r1(pct(values_in(values, first), 95)),
                    "pooled_last_minute_ms": r1(pct(values_in(values, last), 95)),
                    "median_window_ms": r1(typical),
                    "worst_window_ms": top(after, column),
                    "spikes": [[r["t_s"], r[column]] for r in after
                               if typical and (r.get(column) or 0) > 3 * typical],
                    # None: nothing measured (e.g. --stroke-every 0), not judged
                    "stable": None if not values else a is not None and b is not None
                    and b <= TARGETS["p95_growth_factor"] * a}
    viewers = [r for r in rows if r["t_s"] > WARMUP_S and "viewer_fps_min" in r]
    summary = {
        "minutes": minutes, "windows": len(rows),
        "rss_first_minute_mb": r1(rss0), "rss_last_minute_mb": r1(rss1),
        "memory_drift_pct": r1(drift),
        "memory_target_met": drift is not None and drift < TARGETS["memory_drift_pct"],
        "fds_first_minute_max": fd0, "fds_last_minute_max": fd1,
        "fd_growth": None if fd0 is None or fd1 is None else fd1 - fd0,
        "fd_target_met": fd0 is not None and fd1 is not None and fd1 - fd0 <= (fd_allowed or 0),
        "p95": p95,
        "p95_target_met": all(v["stable"] is not False for v in p95.values()),
        "viewer_fps_min_after_warmup": min((r["viewer_fps_min"] for r in viewers), default=None),
        "video_loss_pct_max": max((r["video_loss_pct"] for r in viewers), default=None),
        "targets": TARGETS,
    }
    summary["targets_met"] = bool(summary["memory_target_met"] and summary["fd_target_met"]
                                  and summary["p95_target_met"])
    return summary


def values_in(samples: list[tuple[float, float]], rows: list[dict[str, Any]]) -> list[float]:
    """The (t_s, value) samples that fall in these windows."""
    if not rows:
        return []
    lo, hi = rows[0]["t_s"] - WINDOW_S, rows[-1]["t_s"]
    return [v for t, v in samples if lo <= t < hi]


def print_table(report: dict[str, Any]) -> None:
    cols = [("t_s", 5), ("rss_mb", 7), ("fds", 5), ("cpu_pct", 5), ("cpu_wait_pct", 6),
            ("loop_lag_p99_ms", 8), ("acks", 5), ("ack_p95_ms", 10), ("page_turn_p95_ms", 11),
            ("viewer_fps_min", 7), ("clients_cpu_pct", 9), ("load_avg_1m", 5)]
    heads = ["t (s)", "RSS MB", "fds", "CPU%", "wait%", "lag p99", "acks", "ack p95 ms",
             "turn p95", "fps min", "clients%", "load"]
    print("  ".join(h.rjust(w) for h, (_, w) in zip(heads, cols, strict=True)))
    for row in report["windows"]:
        print("  ".join(str(row.get(k, "")).rjust(w) for k, w in cols))
    s = report["summary"]
    p = s["p95"]
    ok = {True: "met", False: "MISSED", None: "not measured"}
    print(f"\n{s['tablets']} tablets + {s['viewers']} video viewers, {s['minutes']:g} min on "
          f"{s['database']}:")
    print(f"  memory drift  {s['memory_drift_pct']} % ({s['rss_first_minute_mb']} -> "
          f"{s['rss_last_minute_mb']} MB), target < {TARGETS['memory_drift_pct']:g} %: "
          f"{ok[s['memory_target_met']]}")
    print(f"  fds           {s['fds_first_minute_max']} -> {s['fds_last_minute_max']} "
          f"(flat): {ok[s['fd_target_met']]}")
    for key in ("ack", "page_turn"):
        print(f"  {key} p95 {p[key]['first_minute_ms']} -> {p[key]['last_minute_ms']} ms "
              f"(median of windows), median {p[key]['median_window_ms']}, worst "
              f"{p[key]['worst_window_ms']} ms, {len(p[key]['spikes'])} spikes (stable: last <= "
              f"{TARGETS['p95_growth_factor']:g}x first): {ok[p[key]['stable']]}")
    print(f"  ops acknowledged {s['ops_acknowledged']}, errors {s['op_errors']}; page turns "
          f"delivered {s['page_turn_deliveries']}/{s['page_turn_deliveries_expected']}; "
          f"viewer fps min {s['viewer_fps_min_after_warmup']}, video loss max "
          f"{s['video_loss_pct_max']} %; server tracebacks {s['server_tracebacks']}")
    print(f"  -> {'all targets met' if s['targets_met'] else 'TARGET MISSED'}")
