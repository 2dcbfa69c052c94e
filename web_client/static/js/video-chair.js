// The chair's panel of the video conference: people by site with their quality and numbers,
// and the chair's buttons (mute, allow, floor, remove, let back in). Actions go through the
// session's signaling; `run` shows their outcome.
import { t } from "./i18n.js";
import { h, QUALITY_TEXT } from "./video-dom.js";

export class ChairPanel {
  /**
   * @param {HTMLElement} box  where the list goes
   * @param {import("./video-session.js").VideoSession} session
   * @param {object} o
   * @param {(action: () => Promise<unknown>, done?: string) => Promise<void>} o.run
   *   runs a chair action, then says `done` or the error
   */
  constructor(box, session, { run }) {
    this.box = box;
    this.session = session;
    this.run = run;
    /** @type {Map<number, string>} user id -> name, removed by me (chair) this session */
    this.removed = new Map();
  }

  render() {
    const s = this.session;
    if (!s.joined?.can_chair) return;
    const sig = s.sig;
    const me = s.joined.me.user_id;
    const list = h("ul", { class: "video-people" });
    let site;
    for (const person of s.people()) {
      if (person.site !== site) {
        site = person.site;
        if (site && !person.remote) {
          const siteId = person.site_id;
          list.append(h("li", { class: "video-site" }, h("strong", { text: site }),
            h("button", { type: "button", class: "small", "data-site": siteId,
                          onclick: () => this.run(() => sig.chairMute({ site_id: siteId }, "audio"), t("The site is muted.")) },
              t("Mute site"))));
        }
      }
      const stat = person.peers.map((id) => s.stats[id]).find(Boolean);
      if (person.remote) {
        list.append(this.#remotePerson(person));
        continue;
      }
      const kinds = s.lockedUsers.get(person.user_id) ?? new Set();
      const target = { user_id: person.user_id };
      const has = s.floor?.user_id === person.user_id;
      const buttons = person.user_id === me ? [] : [
        kinds.has("audio")
          ? h("button", { type: "button", class: "small", "data-chair": "allow-audio", onclick: () => this.run(() => sig.chairAllow(target, "audio")) }, t("Allow to speak"))
          : h("button", { type: "button", class: "small", "data-chair": "mute", onclick: () => this.run(() => sig.chairMute(target, "audio")) }, t("Mute")),
        kinds.has("video")
          ? h("button", { type: "button", class: "small", "data-chair": "allow-video", onclick: () => this.run(() => sig.chairAllow(target, "video")) }, t("Allow video"))
          : h("button", { type: "button", class: "small", "data-chair": "stop-video", onclick: () => this.run(() => sig.chairMute(target, "video")) }, t("Stop video")),
        h("button", { type: "button", class: "small", "data-chair": "remove", onclick: () => {
          if (!window.confirm(t("Remove this person from the video conference?"))) return;
          this.removed.set(person.user_id, person.name);
          this.run(() => sig.remove(person.user_id));
        } }, t("Remove from video")),
      ];
      buttons.unshift(has
        ? h("button", { type: "button", class: "small active", "data-chair": "floor", onclick: () => this.run(() => sig.giveFloor(null)) }, t("Has the floor"))
        : h("button", { type: "button", class: "small", "data-chair": "floor", onclick: () => this.run(() => sig.giveFloor(person.user_id)) }, t("Give the floor")));
      const numbers = stat ? [
        `${Math.round((stat.bitrate_in_bps + stat.bitrate_out_bps) / 1000)} kbit/s`,
        `${t("loss")} ${(100 * Math.max(stat.loss_up, stat.loss_down)).toFixed(1)}%`,
        stat.rtt_ms !== null ? `RTT ${Math.round(stat.rtt_ms)} ms` : null,
      ].filter(Boolean).join(" · ") : "";
      const quality = s.qualityOf(person.peers[0]);
      list.append(h("li", { class: "video-person", "data-user": person.user_id },
        h("span", { class: `quality q-${quality}`, title: t(QUALITY_TEXT[quality] ?? "") },
          h("i"), h("i"), h("i")),
        h("span", { class: "video-person-name", text: person.name }),
        kinds.has("audio") ? h("span", { class: "badge", text: t("muted by the chair") }) : null,
        h("span", { class: "muted video-person-stats", text: numbers }),
        h("span", { class: "video-person-buttons" }, ...buttons)));
    }
    for (const [userId, name] of this.removed) {
      if (s.people().some((p) => p.user_id === userId)) { this.removed.delete(userId); continue; }
      list.append(h("li", { class: "video-person removed" }, h("span", { class: "video-person-name", text: name }),
        h("span", { class: "badge", text: t("removed") }),
        h("button", { type: "button", class: "small", onclick: () => {
          this.removed.delete(userId);
          this.run(() => sig.readmit(userId), t("They may join the video conference again."));
          this.render();
        } }, t("Let back in"))));
    }
    this.box.replaceChildren(list);
  }

  /** A person at another cascade node: controlled through their producers, on their node. */
  #remotePerson(person) {
    const s = this.session;
    const sig = s.sig;
    const peerId = person.peer_id;
    const mic = s.producerOf(peerId, "mic");
    const camera = s.producerOf(peerId, "camera");
    const toggle = (producer, kind, [onText, offText, onKey, offKey]) => producer && (producer.paused
      ? h("button", { type: "button", class: "small", "data-chair": offKey, onclick: () => this.run(() => sig.chairAllow({ producer_id: producer.id }, kind)) }, t(offText))
      : h("button", { type: "button", class: "small", "data-chair": onKey, onclick: () => this.run(() => sig.chairMute({ producer_id: producer.id }, kind)) }, t(onText)));
    const has = Boolean(s.floor?.peer_ids?.includes(peerId));
    const buttons = [
      has
        ? h("button", { type: "button", class: "small active", "data-chair": "floor", onclick: () => this.run(() => sig.giveFloor(null)) }, t("Has the floor"))
        : h("button", { type: "button", class: "small", "data-chair": "floor", onclick: () => this.run(() => sig.giveFloorToPeer(peerId)) }, t("Give the floor")),
      toggle(mic, "audio", ["Mute", "Allow to speak", "mute", "allow-audio"]),
      toggle(camera, "video", ["Stop video", "Allow video", "stop-video", "allow-video"]),
    ].filter(Boolean);
    return h("li", { class: "video-person", "data-peer": peerId },
      h("span", { class: "video-person-name", text: person.name }),
      h("span", { class: "muted video-person-stats", text: person.site || "" }),
      h("span", { class: "video-person-buttons" }, ...buttons));
  }
}
