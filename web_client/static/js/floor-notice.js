// The floor granted to you, announced wherever you are (issue 14): when the chair gives you
// (or, for a site operator, your site) the floor, a modal dialog takes the focus, with a
// tone and a pulse, saying so and with how much time; when your turn ends or the meeting
// ends, it closes. Fed by startMeetingPrompts (ballot-prompt.js) from the page's socket.
import { t } from "./i18n.js";
import { PromptDialog, clock, h, tf } from "./procedure-ui.js";

export class FloorNotice {
  /** @param {number} meetingId */
  constructor(meetingId) {
    this.meetingId = meetingId;
    this.me = null;
    this.grantedId = null; // the request whose grant was announced (never twice)
    this.dialog = new PromptDialog("floor-notice", "floor-notice");
  }

  /** A procedure:state snapshot. */
  sync(snapshot) {
    this.me = snapshot.me;
    const holder = snapshot.floor?.holder ?? null;
    if (!this.#mine(holder)) this.dialog.close();
    // Joining (or reloading) while already speaking: the page shows it; no new announcement.
    if (holder && this.grantedId === null) this.grantedId = holder.id;
  }

  /** A floor:changed push. */
  floorChanged(floor) {
    const holder = floor.holder;
    if (!this.#mine(holder)) { this.dialog.close(); return; }
    if (holder.id === this.grantedId) return;
    this.grantedId = holder.id;
    this.#announce(holder);
  }

  meetingStatus(status) { if (status === "closed") this.dialog.close(); }

  /** Is this holder me, or my site (a site operator's request for the site)? */
  #mine(holder) {
    if (!holder || !this.me) return false;
    if (holder.for_site) return this.me.role === "site_operator" && holder.site_id === this.me.site_id;
    return holder.user_id === this.me.user_id;
  }

  #announce(holder) {
    const title = holder.for_site ? t("Your site has the floor.") : t("You have the floor.");
    const ok = h("button", { type: "button", class: "primary big", onclick: () => this.dialog.close() }, t("OK"));
    this.dialog.show([
      h("h2", { id: "floor-notice-title" }, title),
      h("div", { id: "floor-notice-body" },
        h("p", {}, holder.limit_seconds
          ? tf("The chair gave you the floor for {time}.", { time: clock(holder.limit_seconds) })
          : t("The chair gave you the floor.")),
        holder.item ? h("p", { class: "muted" }, holder.item) : null),
      h("div", { class: "prompt-buttons" }, ok)], ok);
  }
}
