"""The rate-drop plot of bench/network.py: an SVG drawn by hand (no plotting library is a
dependency), turned into a PNG by the Chromium the tests already use (Playwright)."""

from __future__ import annotations

from pathlib import Path

W, H = 900, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 180, 40, 50
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def svg(title: str, series: dict[str, list[tuple[float, float | None]]],
        dashed: frozenset[str] = frozenset(), y_label: str = "kbit/s",
        y_ticks: dict[float, str] | None = None) -> str:
    """Lines of (seconds, value) points; None breaks a line. `y_ticks`: value -> label
    (instead of six evenly spaced numbers)."""
    points = [p for line in series.values() for p in line if p[1] is not None]
    x_max = max((x for x, _ in points), default=1.0) or 1.0
    y_max = max((y for _, y in points if y is not None), default=1.0) * 1.1 or 1.0
    if y_ticks:
        y_max = max(y_max, max(y_ticks) * 1.15)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + x / x_max * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - y / y_max * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
           f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
           f'stroke="black"/>',
           f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="black"/>']
    ticks = y_ticks or {y_max / 1.1 * i / 5: f"{y_max / 1.1 * i / 5:.0f}" for i in range(6)}
    for tick, label in ticks.items():
        out.append(f'<line x1="{LEFT}" y1="{sy(tick):.1f}" x2="{LEFT + plot_w}" '
                   f'y2="{sy(tick):.1f}" stroke="#ddd"/><text x="{LEFT - 6}" '
                   f'y="{sy(tick) + 4:.1f}" text-anchor="end">{label}</text>')
    for i in range(7):
        x = x_max * i / 6
        out.append(f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 18}" '
                   f'text-anchor="middle">{x:.0f}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{H - 10}" text-anchor="middle">'
               f'seconds into the call</text>')
    out.append(f'<text x="16" y="{TOP + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {TOP + plot_h / 2})">{y_label}</text>')
    for n, (name, line) in enumerate(series.items()):
        color = COLORS[n % len(COLORS)]
        dash = ' stroke-dasharray="6 4"' if name in dashed else ""
        width = 5 if n == 0 else 2  # the first line drawn wide: it shows when others hide it
        segments: list[list[str]] = [[]]
        for x, y in line:
            if y is None:
                segments.append([])
            else:
                segments[-1].append(f"{sx(x):.1f},{sy(y):.1f}")
        for seg in segments:
            if seg:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="{width}"{dash} '
                           f'points="{" ".join(seg)}"/>')
        ly = TOP + 10 + n * 20
        out.append(f'<line x1="{W - RIGHT + 12}" y1="{ly}" x2="{W - RIGHT + 36}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"{dash}/><text x="{W - RIGHT + 42}" '
                   f'y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)


def stack(*panels: str) -> str:
    """Panels made by svg(), one under the other, as one SVG."""
    body = "".join(panel.replace("<svg ", f'<svg y="{n * H}" ', 1)
                   for n, panel in enumerate(panels))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" '
            f'height="{H * len(panels)}">{body}</svg>')


def write(svg_text: str, svg_path: Path, png_path: Path, height: int = H) -> str | None:
    """Write the SVG and its PNG; the reason if the PNG could not be made."""
    svg_path.parent.mkdir(parents=True, exist_ok=True)
    svg_path.write_text(svg_text)
    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        return f"{chromium} is missing: only the SVG was written"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": W, "height": height})
            page.set_content(f"<html><body style='margin:0'>{svg_text}</body></html>")
            page.screenshot(path=str(png_path),
                            clip={"x": 0, "y": 0, "width": W, "height": height})
        finally:
            browser.close()
    return None
