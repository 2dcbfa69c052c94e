// The procedure console's section links (templates/procedure.html): every section stays on
// screen; a link scrolls its section into view, moves the focus there and marks it briefly.
// The chair's "My tablet" card shows only when it holds more than their own check-in and
// request to speak (console.css hides those), e.g. a ballot.

/** @param {HTMLElement} root the #procedure section */
export function setupNav(root) {
  for (const link of /** @type {NodeListOf<HTMLAnchorElement>} */ (root.querySelectorAll(".console-nav a"))) {
    link.addEventListener("click", (event) => {
      const section = document.getElementById(link.hash.slice(1));
      if (!section) return;
      event.preventDefault();  // no jump of the whole page, no history entry
      section.scrollIntoView({ block: "nearest", behavior: "smooth" });
      section.focus({ preventScroll: true });
      section.classList.add("flash");
      setTimeout(() => section.classList.remove("flash"), 1200);
      root.dispatchEvent(new CustomEvent("console-section", { detail: section.id }));
    });
  }
}

/** @param {HTMLElement} root */
export function chairCard(root) {
  const card = /** @type {HTMLElement|null} */ (root.querySelector(".proc-me"));
  if (!card || root.dataset.role !== "chair") return;
  const update = () => {
    const blocks = [...card.querySelectorAll(".proc-block")];
    const hide = !blocks.some((b) => !b.querySelector("#proc-checkin-in-person, #proc-request-floor"));
    if (card.hidden !== hide) card.hidden = hide;
  };
  new MutationObserver(update).observe(card, { childList: true, subtree: true });
  update();
}

const root = document.getElementById("procedure");
if (root) {
  setupNav(root);
  chairCard(root);
}
