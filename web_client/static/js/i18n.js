// UI strings for scripts, from the same gettext catalogs as the pages (/i18n/<lang>.json).

let catalog = {};

export const lang = document.body.dataset.lang || "vi";

export async function loadCatalog() {
  const response = await fetch(`/i18n/${lang}.json`, { credentials: "same-origin" });
  catalog = response.ok ? await response.json() : {};
}

/** Translate an English message id; unknown ids show as written. */
export function t(msgid) {
  return catalog[msgid] || msgid;
}
