// Everyone sees that the meeting is being recorded (issue 16): a badge on every screen of the
// meeting (state bar, documents page, projector), in words and not by colour alone, kept live
// by `recording:state` and asked again with `recording:status` at each (re)join. The chair's
// start/stop button is wired here too (docs/protocol.md, "Recording").

/**
 * @typedef {{meeting_id: number, recording: boolean, started_at: string|null}} RecordingState
 * @typedef {{on: (event: string, handler: (payload: any) => void) => unknown}} SocketLike
 * @typedef {(event: string, payload: object) => Promise<any>} Request
 */

export class RecordingBadge {
  /** @param {HTMLElement} el @param {(msgid: string) => string} t */
  constructor(el, t) {
    this.el = el;
    this.t = t;
    this.recording = false;
  }

  /** @param {RecordingState} state */
  show(state) {
    this.recording = Boolean(state.recording);
    this.el.hidden = !this.recording;
    this.el.dataset.recording = String(this.recording);
    if (!this.recording) return;
    const since = state.started_at ? new Date(state.started_at) : null;
    const time = since ? since.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    // The dot is decoration (aria-hidden); the words say it.
    this.el.replaceChildren();
    const dot = document.createElement("span");
    dot.className = "rec-dot";
    dot.setAttribute("aria-hidden", "true");
    dot.textContent = "●";
    const words = document.createElement("span");
    words.className = "rec-words";
    words.textContent = time ? `${this.t("Recording")} · ${this.t("since")} ${time}` : this.t("Recording");
    this.el.append(dot, " ", words);
  }
}

/**
 * Follow the meeting's recording state: pushes, and `refresh()` after each (re)join.
 * @param {SocketLike} socket @param {Request} request @param {number} meetingId
 * @param {(state: RecordingState) => void} onState
 */
export function followRecording(socket, request, meetingId, onState) {
  socket.on("recording:state", (/** @type {RecordingState} */ state) => {
    if (state.meeting_id === meetingId) onState(state);
  });
  return {
    async refresh() {
      try {
        onState(await request("recording:status", { meeting_id: meetingId }));
      } catch (error) {
        console.warn("recording status:", error);
      }
    },
  };
}

/**
 * The chair's button: start when not recording, stop when recording.
 * @param {HTMLButtonElement} button @param {Request} request @param {number} meetingId
 * @param {(msgid: string) => string} t @param {(text: string) => void} say
 */
export function recordingButton(button, request, meetingId, t, say) {
  let recording = false;
  const paint = () => {
    button.textContent = recording ? t("Stop recording") : t("Start recording");
    button.setAttribute("aria-pressed", String(recording));
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const state = await request(recording ? "recording:stop" : "recording:start",
                                  { meeting_id: meetingId });
      recording = Boolean(state.recording);
      paint();
    } catch (error) {
      say(String(/** @type {Error} */ (error).message || error));
    } finally {
      button.disabled = false;
    }
  });
  paint();
  return { /** @param {RecordingState} state */ show(state) { recording = Boolean(state.recording); paint(); } };
}
