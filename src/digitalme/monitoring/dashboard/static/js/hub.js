// The live hub (/hubs/metrics): one WebSocket that reconnects by itself.
//
// States: "connecting", "live" (Welcome received), "offline" (waiting to
// retry). A closed or silent socket is retried after 0.5 s, doubling up to
// 10 s, with jitter, so a restarted server is found again within seconds and
// a fleet of dashboards does not reconnect in step. Silence longer than
// SILENCE_MS (the hub sends a snapshot every few seconds and a heartbeat every
// 15 s) counts as a dead connection. Close codes 4401 / 4403 (token expired or
// not an admin) end the session instead of retrying.

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10000;
const SILENCE_MS = 35000;
export const REFUSED = new Set([4401, 4403]);

export class Hub {
  constructor(path, token, { onMessage, onState, onRefused }) {
    this.path = path;
    this.token = token;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onRefused = onRefused;
    this.socket = null;
    this.retryMs = FIRST_RETRY_MS;
    this.retryTimer = null;
    this.silenceTimer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    if (this.socket) this.socket.close(1000, "signed out");
    this.socket = null;
  }

  connect() {
    if (this.stopped) return;
    const url = new URL(this.path, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("access_token", this.token);
    this.onState("connecting");
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      this.heard();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // the hub only sends JSON; ignore anything else
      }
      if (message.type === "Welcome") {
        this.retryMs = FIRST_RETRY_MS;
        this.onState("live");
      }
      this.onMessage(message);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      clearTimeout(this.silenceTimer);
      if (REFUSED.has(event.code)) {
        this.onRefused(event.code === 4401 ? 401 : 403);
        return;
      }
      this.retry();
    };
    this.heard();
  }

  heard() {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      if (this.socket) this.socket.close(4000, "silent");
      this.socket = null;
      this.retry();
    }, SILENCE_MS);
  }

  retry() {
    if (this.stopped) return;
    this.onState("offline");
    const delay = this.retryMs * (0.75 + Math.random() * 0.5);
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
