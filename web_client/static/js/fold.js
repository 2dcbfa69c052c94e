// Diacritics-insensitive search for Vietnamese: "Đồng Phú", "dong phu" and "ĐỒNG PHÚ" all match.

/**
 * Lower case, without tone marks and vowel diacritics, đ → d, spaces collapsed.
 * @param {string} text
 * @returns {string}
 */
export function fold(text) {
  return String(text ?? "")
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[đĐ]/g, "d")
    .toLowerCase()
    .replace(/\s+/g, " ")
    .trim();
}

/**
 * How well `haystack` (already folded, see fold) matches `query` as typed, ignoring case and
 * diacritics: 2 when it holds the whole query as a phrase starting at a word ("dong phu" in
 * "phuong dong phu"), 1 when it holds every word somewhere ("phu" is also in "phuong"),
 * 0 otherwise. An empty query matches everything (2). Lists show the best level found.
 * @param {string} haystack
 * @param {string} query
 * @returns {0 | 1 | 2}
 */
export function matchLevel(haystack, query) {
  const phrase = fold(query);
  if (!phrase) return 2;
  if (` ${haystack}`.includes(` ${phrase}`)) return 2;
  return phrase.split(" ").every((word) => haystack.includes(word)) ? 1 : 0;
}
