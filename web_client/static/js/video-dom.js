// Small DOM helpers of the video conference's view (video.js, video-chair.js).

/**
 * A tiny element builder: h("div", {class: "x"}, "text", child).
 * @param {string} tag  @param {Record<string, any>} [attrs]  @param {...(Node|string|null|undefined)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) el.append(child);
  return el;
}

/** "Nguyễn Văn Hùng" → "VH": a tile without video shows these. @param {string|undefined} name */
export function initials(name) {
  return (name || "?").split(/\s+/).filter(Boolean).slice(-2).map((w) => w[0]).join("").toUpperCase();
}

/** The quality badge's tooltip per level (English message ids). */
export const QUALITY_TEXT = {
  good: "Connection: good", fair: "Connection: fair", poor: "Connection: poor",
  connecting: "Connecting…",
};
