// Hopso annotations on a canvas, and questions about them: where they are (bounds,
// hit-test for the eraser and selection), how notes wrap. Pure functions of the model
// (documents/annotations.py); shapes are in page points, drawn through a transform.

export const NOTE = { fontSize: 12, boxWidth: 180, padding: 4, fill: "#fffacd", border: "#8c8c8c" };
export const HIGHLIGHTER = { width: 14, opacity: 0.35 };

/** Stroke width at a pressure (null: a device without pressure). */
export function pressureWidth(width, pressure) {
  return pressure === null || pressure === undefined ? width : width * (0.35 + 1.3 * pressure);
}

let measureCtx = null;
function measurer() {
  measureCtx ??= document.createElement("canvas").getContext("2d");
  return measureCtx;
}

function noteFont(size) { return `${size}px "Noto Sans", "Segoe UI", Roboto, Arial, sans-serif`; }

/** Lines of text that fit maxWidth at ctx's current font (words broken only if they must). */
export function wrapText(ctx, text, maxWidth) {
  const lines = [];
  for (const paragraph of String(text).split("\n")) {
    let line = "";
    for (const word of paragraph.split(/(\s+)/)) {
      const candidate = line + word;
      if (ctx.measureText(candidate).width <= maxWidth || !line.trim()) {
        line = candidate;
      } else {
        lines.push(line.trimEnd());
        line = word.trimStart();
      }
      while (ctx.measureText(line).width > maxWidth && line.length > 1) {
        let cut = line.length - 1;
        while (cut > 1 && ctx.measureText(line.slice(0, cut)).width > maxWidth) cut -= 1;
        lines.push(line.slice(0, cut));
        line = line.slice(cut);
      }
    }
    lines.push(line.trimEnd());
  }
  return lines;
}

/** A note's box in page points. */
export function noteBox(data) {
  const size = data.font_size ?? NOTE.fontSize;
  const width = data.box_width ?? NOTE.boxWidth;
  const ctx = measurer();
  ctx.font = noteFont(size);
  const lines = wrapText(ctx, data.text, width - 2 * NOTE.padding);
  const height = lines.length * size * 1.25 + 2 * NOTE.padding;
  return { x0: data.x, y0: data.y, x1: data.x + width, y1: data.y + height, lines, size };
}

/** Bounding box in page points. */
export function bounds(ann) {
  const d = ann.data;
  if (ann.kind === "note") return noteBox(d);
  let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
  for (const [x, y] of d.points ?? []) {
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
  }
  for (const [a, b, c, e] of d.rects ?? []) {
    x0 = Math.min(x0, a); y0 = Math.min(y0, b); x1 = Math.max(x1, c); y1 = Math.max(y1, e);
  }
  const pad = (d.width ?? 2) / 2;
  return { x0: x0 - pad, y0: y0 - pad, x1: x1 + pad, y1: y1 + pad };
}

function segmentDistance(px, py, ax, ay, bx, by) {
  const dx = bx - ax; const dy = by - ay;
  const len = dx * dx + dy * dy;
  const t = len ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len)) : 0;
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/** Does a circle at (x, y) of radius r (page points) touch the annotation? */
export function hitTest(ann, x, y, r) {
  const d = ann.data;
  if (ann.kind === "note") {
    const b = noteBox(d);
    return x >= b.x0 - r && x <= b.x1 + r && y >= b.y0 - r && y <= b.y1 + r;
  }
  const reach = r + (d.width ?? 2) / 2;
  const pts = d.points ?? [];
  if (pts.length === 1 && Math.hypot(x - pts[0][0], y - pts[0][1]) <= reach) return true;
  for (let i = 1; i < pts.length; i += 1) {
    if (segmentDistance(x, y, pts[i - 1][0], pts[i - 1][1], pts[i][0], pts[i][1]) <= reach) return true;
  }
  return (d.rects ?? []).some(([a, b, c, e]) => x >= a - r && x <= c + r && y >= b - r && y <= e + r);
}

/** Draw one annotation; t maps page points to canvas CSS pixels. */
export function drawAnnotation(ctx, ann, t) {
  const d = ann.data;
  const X = (x) => t.x + x * t.scale;
  const Y = (y) => t.y + y * t.scale;
  ctx.save();
  if (ann.kind === "note") {
    const b = noteBox(d);
    ctx.fillStyle = NOTE.fill;
    ctx.strokeStyle = NOTE.border;
    ctx.lineWidth = 1;
    ctx.fillRect(X(b.x0), Y(b.y0), (b.x1 - b.x0) * t.scale, (b.y1 - b.y0) * t.scale);
    ctx.strokeRect(X(b.x0), Y(b.y0), (b.x1 - b.x0) * t.scale, (b.y1 - b.y0) * t.scale);
    ctx.fillStyle = d.color ?? "#000000";
    ctx.font = noteFont(b.size * t.scale);
    ctx.textBaseline = "top";
    b.lines.forEach((line, i) => {
      ctx.fillText(line, X(b.x0 + NOTE.padding), Y(b.y0 + NOTE.padding + i * b.size * 1.25));
    });
  } else if (ann.kind === "highlighter") {
    ctx.globalAlpha = d.opacity ?? HIGHLIGHTER.opacity;
    ctx.globalCompositeOperation = "multiply";
    ctx.fillStyle = ctx.strokeStyle = d.color ?? "#ffeb3b";
    for (const [a, b, c, e] of d.rects ?? []) {
      ctx.fillRect(X(a), Y(b), (c - a) * t.scale, (e - b) * t.scale);
    }
    const pts = d.points ?? [];
    if (pts.length) {
      ctx.lineWidth = (d.width ?? HIGHLIGHTER.width) * t.scale;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(X(pts[0][0]), Y(pts[0][1]));
      for (const [x, y] of pts.slice(1)) ctx.lineTo(X(x), Y(y));
      if (pts.length === 1) ctx.lineTo(X(pts[0][0]) + 0.01, Y(pts[0][1]));
      ctx.stroke();
    }
  } else {
    drawInk(ctx, d, X, Y, t.scale);
  }
  ctx.restore();
}

function drawInk(ctx, d, X, Y, scale) {
  const pts = d.points ?? [];
  const width = d.width ?? 2;
  ctx.strokeStyle = ctx.fillStyle = d.color ?? "#000000";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (pts.length === 1) {
    ctx.beginPath();
    ctx.arc(X(pts[0][0]), Y(pts[0][1]), pressureWidth(width, pts[0][2]) * scale / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  const varying = pts.some((p) => p[2] !== undefined && p[2] !== null);
  if (!varying) {
    ctx.lineWidth = width * scale;
    ctx.beginPath();
    ctx.moveTo(X(pts[0][0]), Y(pts[0][1]));
    // Quadratic curves through midpoints: smooth without moving the recorded points much.
    for (let i = 1; i < pts.length - 1; i += 1) {
      const mx = (pts[i][0] + pts[i + 1][0]) / 2;
      const my = (pts[i][1] + pts[i + 1][1]) / 2;
      ctx.quadraticCurveTo(X(pts[i][0]), Y(pts[i][1]), X(mx), Y(my));
    }
    const last = pts[pts.length - 1];
    ctx.lineTo(X(last[0]), Y(last[1]));
    ctx.stroke();
    return;
  }
  for (let i = 1; i < pts.length; i += 1) {
    const [ax, ay, ap] = pts[i - 1];
    const [bx, by, bp] = pts[i];
    ctx.lineWidth = pressureWidth(width, ((ap ?? 0.5) + (bp ?? 0.5)) / 2) * scale;
    ctx.beginPath();
    ctx.moveTo(X(ax), Y(ay));
    ctx.lineTo(X(bx), Y(by));
    ctx.stroke();
  }
}
