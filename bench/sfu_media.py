"""Pre-encoded media for bench/sfu.py: a VP8 clip of about 1 Mbps and Opus.

Encoding happens once, before anything is measured, and the result is
cached on disk (``$HOPSO_BENCH_CACHE`` or ``/tmp/hopso-sfu-bench-cache``); the
load generator only reads the cache and packetizes. The clip is 640x360 at
30 fps with a single keyframe (frame 0). The publisher loops it and jumps
back to frame 0 when asked for a keyframe, as the test helpers do.

The content is a moving diagonal pattern plus a band of fresh noise in
every frame: cheap to generate without numpy, and enough detail that
libvpx's rate control lands near the 1 Mbps target (about 4 packets per
delta frame, a 20 KB keyframe). Audio is a 440 Hz tone with noise, so no
two Opus packets are equal (the latency probe keys packets by payload),
with its RFC 6464 level precomputed per packet.
"""

from __future__ import annotations

import fractions
import math
import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path

WIDTH, HEIGHT, FPS = 640, 360, 30
VIDEO_BITRATE = 1_000_000
AUDIO_BITRATE = 40_000
CLIP_SECONDS = 10
NOISE_ROWS = 16
DEADLINE, CPU_USED = "good", "4"
CACHE_VERSION = 3


@dataclass
class Clip:
    vp8: list[bytes]  # one encoded frame each; vp8[0] is the only keyframe
    opus: list[bytes]  # 20 ms packets
    levels: list[int]  # RFC 6464 level (0 = loud, 127 = silence) per Opus packet

    @property
    def video_bps(self) -> float:
        return sum(map(len, self.vp8)) * 8 / (len(self.vp8) / FPS)


def cache_dir() -> Path:
    return Path(os.environ.get("HOPSO_BENCH_CACHE", "/tmp/hopso-sfu-bench-cache"))


def _cache_file() -> Path:
    name = (f"clip-v{CACHE_VERSION}-vp8-{WIDTH}x{HEIGHT}-{FPS}fps-{VIDEO_BITRATE}"
            f"-opus{AUDIO_BITRATE}-{CLIP_SECONDS}s.bin")
    return cache_dir() / name


def _write(path: Path, clip: Clip) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for items in (clip.vp8, clip.opus):
            f.write(struct.pack("!I", len(items)))
            for item in items:
                f.write(struct.pack("!I", len(item)))
                f.write(item)
        f.write(struct.pack("!I", len(clip.levels)))
        f.write(bytes(clip.levels))
    os.replace(tmp, path)


def _read(path: Path) -> Clip:
    data = path.read_bytes()
    pos = 0

    def items() -> list[bytes]:
        nonlocal pos
        (count,) = struct.unpack_from("!I", data, pos)
        pos += 4
        out = []
        for _ in range(count):
            (size,) = struct.unpack_from("!I", data, pos)
            pos += 4
            out.append(data[pos:pos + size])
            pos += size
        return out

    vp8 = items()
    opus = items()
    (count,) = struct.unpack_from("!I", data, pos)
    levels = list(data[pos + 4:pos + 4 + count])
    return Clip(vp8, opus, levels)


def _encode_vp8() -> list[bytes]:
    import av

    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS)
    codec.bit_rate = VIDEO_BITRATE
    codec.gop_size = 1_000_000  # one keyframe; later ones come from looping to frame 0
    rate = str(VIDEO_BITRATE)
    codec.options = {"deadline": DEADLINE, "cpu-used": CPU_USED, "lag-in-frames": "0",
                     "minrate": rate, "maxrate": rate, "bufsize": str(VIDEO_BITRATE // 2),
                     "qmax": "56"}
    rng = random.Random(7)
    rows = [bytes(((x * 7 + y * 3) // 2) & 255 for x in range(2 * WIDTH)) for y in range(64)]
    chroma_v = bytes([128]) * (WIDTH * HEIGHT // 4)
    out: list[bytes] = []
    for i in range(CLIP_SECONDS * FPS):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        parts = []
        for y in range(HEIGHT):
            row = rows[(y + i) % 64]
            start = (i * 4 + y) % WIDTH
            parts.append(row[start:start + WIDTH])
        luma = bytearray(b"".join(parts))
        band = 160 * WIDTH
        luma[band:band + NOISE_ROWS * WIDTH] = rng.randbytes(NOISE_ROWS * WIDTH)
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(bytes([128 + i % 64]) * (WIDTH * HEIGHT // 4))
        frame.planes[2].update(chroma_v)
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out


def _encode_opus() -> tuple[list[bytes], list[int]]:
    import av

    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.format, codec.layout = 48000, "s16", "stereo"
    codec.bit_rate = AUDIO_BITRATE
    time_base = fractions.Fraction(1, 48000)
    codec.time_base = time_base
    rng = random.Random(11)
    out: list[bytes] = []
    levels: list[int] = []
    for i in range(CLIP_SECONDS * 50):
        amplitude = 0.05 + 0.25 * (0.5 + 0.5 * math.sin(i / 25))  # varies: speaker detection
        samples: list[int] = []
        energy = 0.0
        for n in range(960):
            s = amplitude * math.sin(2 * math.pi * 440 * (i * 960 + n) / 48000)
            s += 0.02 * (rng.random() - 0.5)
            energy += s * s
            v = int(max(-1.0, min(1.0, s)) * 32767)
            samples += (v, v)
        rms = math.sqrt(energy / 960)
        dbov = 127 if rms <= 0 else min(127, max(0, round(-20 * math.log10(rms))))
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(struct.pack("<1920h", *samples))
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, time_base
        packets = [bytes(p) for p in codec.encode(frame)]
        out += packets
        levels += [dbov] * len(packets)
    return out, levels


def load_clip() -> Clip:
    """The cached clip; encodes it first if there is no cache (a few seconds)."""
    path = _cache_file()
    if path.exists():
        try:
            return _read(path)
        except (struct.error, OSError):
            pass
    vp8 = _encode_vp8()
    opus, levels = _encode_opus()
    clip = Clip(vp8, opus, levels)
    _write(path, clip)
    return clip


if __name__ == "__main__":
    c = load_clip()
    print(f"{len(c.vp8)} VP8 frames, {c.video_bps / 1e6:.2f} Mbps, keyframe {len(c.vp8[0])} B;"
          f" {len(c.opus)} Opus packets")
