// Meeting chat (templates/procedure.html, docs/protocol.md "Meeting chat"): messages to
// everyone, or privately to the chair and secretariat; the chair may hide a message. Its
// own connection (Signaling), like the video's; the wire names live in ChatChannel only.
import { loadCatalog, t } from "./i18n.js";
import { Signaling } from "./signaling.js";

/** @typedef {{id: number, meeting_id: number, sender_id: number, sender: string, to: string,
 *   text: string, at: string, hidden: boolean}} Message */

const ERRORS = {
  rate_limited: "You are sending messages too fast; wait a moment.",
  too_long: "The message is too long (2,000 characters at most).",
  empty: "Write a message first.",
  meeting_closed: "The meeting is closed; its chat is read-only.",
  not_found: "This message or meeting is no longer available.",
  forbidden: "Only the chair may hide messages.",
};

/** The chat's events over a Signaling connection. */
export class ChatChannel {
  /** @param {Signaling} signaling @param {number} meetingId */
  constructor(signaling, meetingId) {
    this.sig = signaling;
    this.meetingId = meetingId;
    /** @type {(m: Message) => void} */ this.onMessage = () => {};
    /** @type {(id: number) => void} */ this.onHidden = () => {};
    signaling.socket.on("chat:message", (m) => { if (m.meeting_id === meetingId) this.onMessage(m); });
    signaling.socket.on("chat:hidden", (e) => { if (e.meeting_id === meetingId) this.onHidden(e.message_id); });
  }

  history() { return this.sig.request("chat:history", { meeting_id: this.meetingId }); }
  /** @param {"all"|"chair"} to @param {string} text */
  send(to, text) { return this.sig.request("chat:send", { meeting_id: this.meetingId, to, text }); }
  /** @param {number} messageId */
  hide(messageId) { return this.sig.request("chat:hide", { meeting_id: this.meetingId, message_id: messageId }); }
}

/** @param {unknown} error */
function errorText(error) {
  const code = /** @type {{code?: string}} */ (error)?.code ?? "";
  return t(ERRORS[code] ?? "The message was not sent; try again.");
}

export class ChatPanel {
  /** @param {HTMLElement} root the #console-chat section @param {ChatChannel} channel */
  constructor(root, channel) {
    this.root = root;
    this.channel = channel;
    this.list = /** @type {HTMLOListElement} */ (root.querySelector("#chat-list"));
    this.form = /** @type {HTMLFormElement} */ (root.querySelector("#chat-form"));
    this.text = /** @type {HTMLTextAreaElement} */ (root.querySelector("#chat-text"));
    this.to = /** @type {HTMLSelectElement} */ (root.querySelector("#chat-to"));
    this.status = /** @type {HTMLElement} */ (root.querySelector("#chat-status"));
    this.unread = document.getElementById("chat-unread");
    this.canModerate = false;
    /** @type {Map<number, HTMLLIElement>} */ this.items = new Map();
    this.unseen = 0;
    channel.onMessage = (m) => this.add(m, true);
    channel.onHidden = (id) => this.markHidden(id);
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.send(); });
    this.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {  // Shift+Enter: new line
        event.preventDefault();
        this.send();
      }
    });
    // Unread: live messages that arrived while the chat was out of sight (another pane,
    // scrolled away); cleared once it is seen.
    this.inView = false;
    new IntersectionObserver((entries) => {
      this.inView = entries.some((e) => e.isIntersecting);
      if (this.inView) this.clearUnread();
    }).observe(this.root);
  }

  visible() { return this.inView && document.visibilityState === "visible"; }

  async load() {
    const found = await this.channel.history();
    this.canModerate = found.can_moderate;
    this.list.replaceChildren();
    this.items.clear();
    for (const m of found.messages) this.add(m, false);
  }

  async send() {
    const text = this.text.value.trim();
    if (!text) { this.say(t(ERRORS.empty)); return; }
    const to = this.to.value === "chair" ? "chair" : "all";
    try {
      const sent = await this.channel.send(to, text);
      this.add(sent, false);
      this.text.value = "";
      this.say("");
    } catch (error) {
      this.say(errorText(error));
    }
  }

  /** @param {string} text */
  say(text) { this.status.textContent = text; }

  /** @param {Message} m @param {boolean} live */
  add(m, live) {
    if (this.items.has(m.id)) return;
    const li = document.createElement("li");
    li.dataset.messageId = String(m.id);
    const who = Object.assign(document.createElement("span"), { className: "chat-who", textContent: m.sender });
    const at = Object.assign(document.createElement("time"), {
      className: "chat-at", dateTime: m.at,
      textContent: new Date(m.at).toLocaleTimeString(document.documentElement.lang || "vi", { hour: "2-digit", minute: "2-digit" }),
    });
    li.append(who, at);
    if (m.to === "chair") {
      li.append(Object.assign(document.createElement("span"), { className: "chat-private", textContent: t("Private, to the chair") }));
    }
    li.append(Object.assign(document.createElement("span"), { className: "chat-text" }));
    if (this.canModerate) {
      const hide = Object.assign(document.createElement("button"), {
        type: "button", className: "chat-hide", textContent: t("Hide"),
      });
      hide.setAttribute("aria-label", `${t("Hide")}: ${m.sender}`);
      hide.addEventListener("click", () => this.hide(m.id));
      li.append(hide);
    }
    this.items.set(m.id, li);
    this.paint(li, m.text, m.hidden);
    const stick = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 8;
    this.list.append(li);
    if (stick || !live) this.list.scrollTop = this.list.scrollHeight;
    if (live && !this.visible()) {
      this.unseen += 1;
      if (this.unread) { this.unread.hidden = false; this.unread.textContent = String(this.unseen); }
    }
  }

  /** @param {HTMLLIElement} li @param {string} text @param {boolean} hidden */
  paint(li, text, hidden) {
    li.classList.toggle("hidden", hidden);
    const box = /** @type {HTMLElement} */ (li.querySelector(".chat-text"));
    // The chair and secretaries still read a hidden message's text (marked hidden).
    box.textContent = hidden ? (text ? `${t("(hidden)")} ${text}` : t("A message was hidden by the chair.")) : text;
    const button = /** @type {HTMLButtonElement|null} */ (li.querySelector(".chat-hide"));
    if (button) button.hidden = hidden;
  }

  /** @param {number} id */
  async hide(id) {
    try {
      await this.channel.hide(id);
      this.markHidden(id);
    } catch (error) {
      this.say(errorText(error));
    }
  }

  /** @param {number} id */
  markHidden(id) {
    const li = this.items.get(id);
    if (!li) return;
    const text = this.canModerate ? li.querySelector(".chat-text")?.textContent ?? "" : "";
    if (!li.classList.contains("hidden")) this.paint(li, text, true);
  }

  clearUnread() {
    this.unseen = 0;
    if (this.unread) this.unread.hidden = true;
  }
}

const root = document.getElementById("console-chat");
if (root) {
  await loadCatalog();
  const meetingId = Number.parseInt(root.dataset.meetingId ?? "", 10);
  const signaling = new Signaling();
  const panel = new ChatPanel(root, new ChatChannel(signaling, meetingId));
  signaling.onConnectionChange = async (connected) => {
    if (!connected) return;
    try {
      await signaling.joinMeeting(meetingId);
      await panel.load();
    } catch (error) {
      panel.say(errorText(error));
    }
  };
}
