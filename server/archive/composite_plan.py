"""The composite video's layout as an ffmpeg command (pure: no I/O, tested on its own).

One layout: the floor holder's camera large on the left, the presented page on the right,
every microphone mixed. From the recording's timeline: `floor` entries say whose camera is
large and when, `presented` entries which page is beside it. When nobody has the floor, or
the holder has no camera track, the default camera is shown (the first recorded). Without a
timeline the caller passes no entries: the single default camera for the whole video and
whatever pages it found (`Layout.notes` says so).

Every track file is stamped on the recording's clock but ffmpeg starts each input at 0, so
each input is moved back to where it began (`start_s`, from ffprobe) with setpts/adelay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FPS = 15


@dataclass(frozen=True)
class Track:
    path: Path
    kind: str  # audio | video
    source: str  # camera | microphone | screen | ...
    user_id: int | None
    start_s: float  # where its first frame sits on the recording's clock


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    value: Any  # a Track (video), or an image Path (page), or None


@dataclass
class Layout:
    width: int
    height: int
    duration_s: float
    video: list[Segment] = field(default_factory=list)
    pages: list[Segment] = field(default_factory=list)
    audio: list[Track] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def main_size(self) -> tuple[int, int]:
        return _even(self.width * 0.6), _even(self.height)

    @property
    def page_size(self) -> tuple[int, int]:
        return self.width - self.main_size[0], _even(self.height)


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def segments(changes: Sequence[tuple[float, Any]], duration_s: float) -> list[tuple[float, float, Any]]:
    """[(start, end, value)] from ordered (time, value) changes; before the first: None."""
    out: list[tuple[float, float, Any]] = []
    at, value = 0.0, None
    for t, new in sorted(changes, key=lambda c: c[0]):
        t = min(max(t, 0.0), duration_s)
        if t > at:
            out.append((at, t, value))
        at, value = max(at, t), new
    if duration_s > at:
        out.append((at, duration_s, value))
    return out


def layout(width: int, height: int, duration_s: float, tracks: Sequence[Track],
           entries: Sequence[dict[str, Any]], page_image: dict[tuple[int, int, int], Path],
           blank: Path) -> Layout:
    """Who is large and which page is beside it over time, from the timeline `entries`."""
    result = Layout(width, height, duration_s)
    cameras = [t for t in tracks if t.kind == "video" and t.source != "screen"]
    result.audio = [t for t in tracks if t.kind == "audio"]
    default = cameras[0] if cameras else None
    floors = [(e["offset_ms"] / 1000, e["data"].get("user_id")) for e in entries
              if e["kind"] == "floor"]
    if not floors:
        result.notes.append("no floor changes in the timeline: the first camera throughout")
    for start, end, user in segments(floors, duration_s):
        track = _camera_of(cameras, user, start) or default
        if result.video and result.video[-1].value is track:
            result.video[-1] = Segment(result.video[-1].start_s, end, track)
        else:
            result.video.append(Segment(start, end, track))
    if default is None:
        result.notes.append("no camera track: the left side is empty")
    shown = [(e["offset_ms"] / 1000, _page_key(e["data"])) for e in entries
             if e["kind"] == "presented"]
    if not shown:
        result.notes.append("no presented pages in the timeline")
    for start, end, key in segments(shown, duration_s):
        image = page_image.get(key) if key is not None else None
        result.pages.append(Segment(start, end, image or blank))
    return result


def _page_key(data: dict[str, Any]) -> tuple[int, int, int] | None:
    if not data.get("active") or data.get("document_id") is None:
        return None
    return int(data["document_id"]), int(data["version"]), int(data["page"])


def _camera_of(cameras: Sequence[Track], user: int | None, at: float) -> Track | None:
    """The user's camera that began last before `at` (else their first one)."""
    if user is None:
        return None
    own = [t for t in cameras if t.user_id == user]
    earlier = [t for t in own if t.start_s <= at + 0.5]
    if earlier:
        return earlier[-1]
    return own[0] if own else None


def concat_list(pages: Sequence[Segment]) -> str:
    """An ffconcat script showing each page for its time (the last line repeats the last
    file: the demuxer ignores the last duration otherwise)."""
    lines = ["ffconcat version 1.0"]
    for seg in pages:
        lines += [f"file '{_quote(seg.value)}'", f"duration {seg.end_s - seg.start_s:.3f}"]
    if pages:
        lines.append(f"file '{_quote(pages[-1].value)}'")
    return "\n".join(lines) + "\n"


def _quote(path: Path) -> str:
    return str(path).replace("'", "'\\''")


def command(plan: Layout, concat_file: Path, output: Path, ffmpeg: str = "ffmpeg",
            threads: int = 2) -> list[str]:
    """The ffmpeg argv writing `output` (MP4: H.264 + AAC) with progress on stdout."""
    mw, mh = plan.main_size
    pw, ph = plan.page_size
    d = plan.duration_s
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    inputs: list[Path] = []
    videos: dict[Path, list[Segment]] = {}
    for seg in plan.video:
        if seg.value is not None:
            videos.setdefault(seg.value.path, []).append(seg)
    starts = {t.path: t.start_s for t in [*plan.audio, *(s.value for s in plan.video if s.value)]}
    inputs += list(videos) + [t.path for t in plan.audio]
    for path in inputs:
        argv += ["-i", str(path)]
    page_input = len(inputs)
    argv += ["-f", "concat", "-safe", "0", "-i", str(concat_file)]
    graph = [f"color=c=0x1e1e1e:s={plan.width}x{plan.height}:r={FPS}:d={d:.3f}[base]"]
    last = "base"
    for i, (path, segs) in enumerate(videos.items()):
        on = "+".join(f"between(t,{s.start_s:.3f},{s.end_s:.3f})" for s in segs)
        graph.append(f"[{i}:v]setpts=PTS-STARTPTS+{starts[path]:.3f}/TB,fps={FPS},"
                     f"scale={mw}:{mh}:force_original_aspect_ratio=decrease,"
                     f"pad={mw}:{mh}:(ow-iw)/2:(oh-ih)/2,setsar=1[v{i}]")
        graph.append(f"[{last}][v{i}]overlay=0:0:eof_action=pass:enable='{on}'[m{i}]")
        last = f"m{i}"
    graph.append(f"[{page_input}:v]fps={FPS},scale={pw}:{ph}:force_original_aspect_ratio="
                 f"decrease,pad={pw}:{ph}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[pg]")
    graph.append(f"[{last}][pg]overlay={mw}:0:eof_action=pass,format=yuv420p[vout]")
    audio_maps: list[str] = []
    if plan.audio:
        first = len(videos)
        labels = []
        for j, track in enumerate(plan.audio):
            delay = round(track.start_s * 1000)
            graph.append(f"[{first + j}:a]aresample=48000,asetpts=PTS-STARTPTS,"
                         f"adelay={delay}:all=1[a{j}]")
            labels.append(f"[a{j}]")
        graph.append(f"{''.join(labels)}amix=inputs={len(labels)}:duration=longest:"
                     f"dropout_transition=0:normalize=0[aout]")
        audio_maps = ["-map", "[aout]", "-c:a", "aac", "-b:a", "96k"]
    argv += ["-filter_complex", ";".join(graph), "-map", "[vout]", *audio_maps,
             "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-pix_fmt", "yuv420p",
             "-r", str(FPS), "-t", f"{d:.3f}", "-threads", str(threads),
             "-movflags", "+faststart", "-f", "mp4", "-progress", "pipe:1", "-nostats",
             str(output)]
    return argv
