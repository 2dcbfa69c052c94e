// JSON API calls with the session's CSRF token; errors become Error objects with .code.

/** @returns {string} */
export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") ?? "";
}

/**
 * @param {string} method
 * @param {string} url
 * @param {object} [body]
 */
export async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "Accept": "application/json",
               "X-CSRF-Token": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw Object.assign(new Error(data?.error?.message ?? response.statusText),
                        { code: data?.error?.code ?? String(response.status) });
  }
  return data;
}
