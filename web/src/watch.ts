// The watch page's player: Video.js v10's HTML player (custom elements, live skin) on its hls.js
// engine in low-latency mode. The page (daemons/http/pages.py) renders the markup and passes the
// stream's slug in data- attributes: no inline script, so a strict CSP holds.
//
// What it does: asks /api/streams/<slug>/playback every few seconds and shows offline / starting
// / live / reconnecting / ended by itself; plays the master playlist through hls.js (never the
// browser's own HLS), near the live edge, catching up when it drifts; recovers from network and
// media errors and from a new broadcast without a reload; reports startup, errors, rebuffers and
// live-edge distance to /api/player/events with a per-page session id, which every HLS request
// carries too.
//
// The page, not the player, says what is happening to the broadcast: while its publisher is away
// ("reconnecting") and once it has ended, loading stops, the last frame stays under one message,
// and the player's own error dialog is dismissed (a missing playlist then is expected, not an
// error for the viewer). Once a recorded broadcast has ended, the message links its replay.
//
// Replay mode (`/watch/<slug>/<generation>`, data-mode="replay"): a recording, played from its
// start with Video.js's video skin (seek bar, ±10 s, playback rate) on hls.js *not* in
// low-latency mode — the VOD playlist of an ended broadcast, or the DVR playlist (EVENT) of a
// live one, whose end grows while it is watched. The page gives the master playlist's URL; a
// private stream's token from the page's URL goes with it.

import { createPlayer, MediaContainerElement, MediaElement } from "@videojs/html";
import { liveVideoFeatures } from "@videojs/html/live-video";
import "@videojs/html/live-video/skin";
import "@videojs/html/video/skin";
import "@videojs/html/media/hls-video";
import Hls, { type ErrorData, type HlsConfig } from "hls.js";

const POLL_MS = 3000;            // playback API while live
const POLL_WAITING_MS = 1000;    // ... while offline, starting or reconnecting: start as soon as it is back
const END_GRACE_MS = 4000;       // an ended broadcast plays out what is buffered, at most this long
const FLUSH_MS = 5000;           // telemetry batch interval
const EDGE_SAMPLE_MS = 5000;     // live_edge events
const DRIFT_MAX_S = 4;           // past this distance from the live edge: jump back to it
const RETRY_MS = [1000, 2000, 4000, 8000];

type Status = "offline" | "starting" | "live" | "ended";
type Shown = Status | "reconnecting" | "replay";
interface Playback {
  stream: { id: string; slug: string; title: string | null; visibility: string };
  status: Status;
  generation_id: string | null;
  master_url: string | null;
  low_latency: boolean;
  publisher_connected: boolean;
  publisher_left_at: string | null;
  viewers: number;
}
interface PlayerEvent { kind: string; value?: number; detail?: string }

// --- Video.js v10: a player element with the live features, the live skin, <hls-video> ---------

const { ProviderMixin } = createPlayer({ features: liveVideoFeatures });
class LiveVideoPlayerElement extends ProviderMixin(MediaElement) {}
function define(name: string, ctor: CustomElementConstructor) {
  if (!customElements.get(name)) customElements.define(name, ctor);
}
define("video-player", LiveVideoPlayerElement as unknown as CustomElementConstructor);
define("media-container", MediaContainerElement as unknown as CustomElementConstructor);

interface HlsVideoElement extends HTMLElement {
  src: string;
  config: Partial<HlsConfig>;
  preferPlayback: "mse" | "native";
  preload: string;
  readonly engine: Hls | null;
  readonly target: HTMLVideoElement | null;
  play(): Promise<void>;
}

// --- the page ------------------------------------------------------------------------------------

const root = document.getElementById("watch") as HTMLElement;
const slug = root.dataset.slug as string;
const replayMode = root.dataset.mode === "replay";
const token = new URLSearchParams(location.search).get("token");
const media = document.querySelector("hls-video") as unknown as HlsVideoElement;
const badge = document.getElementById("badge") as HTMLElement;
const titleEl = document.getElementById("title") as HTMLElement;
const viewersEl = document.getElementById("viewers") as HTMLElement;
const overlay = document.getElementById("overlay") as HTMLElement;
const playerEl = document.querySelector("video-player") as unknown as {
  store: { error: unknown; dismissError(): void; subscribe(cb: () => void): () => void };
};

function newSessionId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
const sessionId = newSessionId();

const state = {
  status: null as Status | null,
  shown: null as Shown | null,  // what the page says (live + publisher away = reconnecting)
  halted: false,                // loading stopped: reconnecting or ended
  message: "",
  generationId: null as string | null,
  masterUrl: null as string | null,
  loadedAt: 0,             // performance.now() when the current source was set
  startupMs: null as number | null,
  playing: false,
  rebuffering: 0 as number, // performance.now() when the current stall began, or 0
  rebuffers: 0,
  errors: [] as string[],
  recoveries: 0,
  catchUps: 0,
  retry: 0,
  eventsSent: 0,
  lastEdge: null as number | null,
  replayEnded: false,      // replay mode: the playlist has ENDLIST (a VOD, or a DVR whose broadcast ended)
  replayUrl: null as string | null,  // an ended broadcast's replay page, once its recording is complete
  playbackMaster: null as string | null,  // the playback API's master_url of the latest broadcast
};

// --- telemetry -------------------------------------------------------------------------------------

let queue: PlayerEvent[] = [];
function report(kind: string, value?: number, detail?: string) {
  const e: PlayerEvent = { kind };
  if (value !== undefined && Number.isFinite(value)) e.value = Math.round(value * 1000) / 1000;
  if (detail) e.detail = detail.slice(0, 500);
  queue.push(e);
  if (queue.length >= 40) flush();
}
function batchBody(events: PlayerEvent[]): string {
  const body: Record<string, unknown> = { session_id: sessionId, stream: slug, events };
  if (state.generationId) body.generation_id = state.generationId;
  return JSON.stringify(body);
}
function flush(beacon = false) {
  if (!queue.length) return;
  const events = queue.slice(0, 50);
  queue = queue.slice(50);
  const body = batchBody(events);
  state.eventsSent += events.length;
  if (beacon && navigator.sendBeacon) {
    navigator.sendBeacon("/api/player/events", new Blob([body], { type: "application/json" }));
    return;
  }
  fetch("/api/player/events", { method: "POST", headers: { "Content-Type": "application/json" }, body, keepalive: true })
    .catch(() => undefined);
}
setInterval(flush, FLUSH_MS);
addEventListener("pagehide", () => flush(true));

// --- what the page shows ------------------------------------------------------------------------

const LABELS: Record<Shown, string> = {
  offline: "Offline", starting: "Starting", live: "Live", reconnecting: "Reconnecting", ended: "Ended", replay: "Replay",
};
const MESSAGES: Record<Shown, string> = {
  offline: "This stream is offline. It will start playing here as soon as it goes live.",
  starting: "The stream is starting…",
  live: "",
  reconnecting: "The broadcaster is reconnecting…",
  ended: "The broadcast has ended.",
  replay: "",
};

function show(status: Shown | null, message: string) {
  state.shown = status;
  badge.dataset.status = status ?? "unknown";
  badge.textContent = status ? LABELS[status] : "…";
  root.dataset.status = status ?? "error";
  overlay.textContent = message;
  overlay.hidden = !message;
  overlay.dataset.kind = status === "reconnecting" ? "over-frame" : "cover";
  if (status === "reconnecting" || status === "ended") dismissPlayerError();
}

// The player's own error dialog ("Something went wrong") is for errors the viewer can act on;
// while the broadcaster is away or after the end, the page's one message says it all.
function dismissPlayerError() {
  const store = playerEl.store;
  if (store.error) store.dismissError();
}
playerEl.store.subscribe(() => {
  if (state.halted || state.shown === "reconnecting" || state.shown === "ended") dismissPlayerError();
});

function setViewers(n: number) {
  viewersEl.textContent = `${n} ${n === 1 ? "viewer" : "viewers"}`;
}

// --- playback -----------------------------------------------------------------------------------

const hlsConfig: Partial<HlsConfig> = {
  lowLatencyMode: true,
  liveSyncOnStallIncrease: 0.5,      // and aims a little further back after each stall
  maxLiveSyncPlaybackRate: 1.5,      // catch up smoothly when behind the target
  backBufferLength: 10,
  enableWorker: true,
  startFragPrefetch: true,
  fragLoadPolicy: { default: { maxTimeToFirstByteMs: 8000, maxLoadTimeMs: 20000,
    timeoutRetry: { maxNumRetry: 4, retryDelayMs: 0, maxRetryDelayMs: 0 },
    errorRetry: { maxNumRetry: 6, retryDelayMs: 500, maxRetryDelayMs: 4000 } } },
  xhrSetup: (xhr: XMLHttpRequest) => xhr.setRequestHeader("X-Playback-Session-Id", sessionId),
};

// A recording: a VOD playlist, or a DVR (EVENT) one growing while live. Played from its start,
// with no live-edge chasing: the viewer seeks where they like.
const replayConfig: Partial<HlsConfig> = {
  lowLatencyMode: false,
  startPosition: 0,
  liveDurationInfinity: false,  // a DVR playlist's duration is where it ends now: the seek bar spans it
  backBufferLength: 30,
  enableWorker: true,
  fragLoadPolicy: hlsConfig.fragLoadPolicy,
  xhrSetup: hlsConfig.xhrSetup,
};

// Video.js's <hls-video> starts hls.js with `startLoad()`, no position, when the media element
// attaches (its preload handling). For a live (EVENT) playlist hls.js reads "no position" as "the
// live edge": when the attach completes after the DVR playlist arrived, a replay would begin at
// its end instead of its start (a race, seen under load). On a replay page a load without a
// position starts where the viewer is: the start at first, their own position later.
if (replayMode) {
  const startLoad = Hls.prototype.startLoad;
  Hls.prototype.startLoad = function (this: Hls, position = -1, skipSeekToStartPosition?: boolean) {
    startLoad.call(this, position === -1 ? (this.media?.currentTime ?? 0) : position, skipSeekToStartPosition);
  };
}

let hooked: Hls | null = null;

function engine(): Hls | null {
  return media.engine;
}

function video(): HTMLVideoElement | null {
  return media.target;
}

function load(url: string, config: Partial<HlsConfig> = hlsConfig) {
  state.halted = false;
  state.masterUrl = url;
  state.loadedAt = performance.now();
  state.startupMs = null;
  state.playing = false;
  media.preferPlayback = "mse";   // this Chromium plays HLS natively too: insist on hls.js
  media.config = config;
  media.preload = "auto";
  media.src = url;
  // <hls-video> makes its hls.js instance on the next microtask; hook it once it exists.
  setTimeout(hookEngine, 0);
}

function hookEngine() {
  const hls = engine();
  if (!hls) { setTimeout(hookEngine, 50); return; }
  if (hooked === hls) return;
  hooked = hls;
  hls.on(Hls.Events.ERROR, (_e, data) => onHlsError(hls, data));
  hls.on(Hls.Events.MANIFEST_PARSED, tryPlay);
  hls.on(Hls.Events.FRAG_LOADED, () => { state.retry = 0; });
  if (replayMode) hls.on(Hls.Events.LEVEL_LOADED, (_e, data) => { state.replayEnded = !data.details.live; });
}

function tryPlay() {
  const v = video();
  if (!v) return;
  v.muted = true;  // browsers allow autoplay only muted; the skin's mute button unmutes
  v.play().catch(() => undefined);
}

function onHlsError(hls: Hls, data: ErrorData) {
  if (state.halted) return;  // loading was stopped on purpose: nothing to recover
  const what = `${data.type}/${data.details}${data.response?.code ? ` ${data.response.code}` : ""}`;
  if (state.errors.length < 50) state.errors.push(`${data.fatal ? "fatal " : ""}${what}`);
  if (!data.fatal) {
    // hls.js aborts requests it no longer needs (a preload hint superseded) and stalls are
    // reported as rebuffers: neither is an error worth a report.
    if (data.details !== Hls.ErrorDetails.BUFFER_STALLED_ERROR && !/abort/i.test(data.details)) report("error", 0, what);
    return;
  }
  report("error", 1, what);
  state.recoveries += 1;
  if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
    hls.recoverMediaError();
    return;
  }
  // A network error (a publisher reconnecting, the server restarting): try again with backoff;
  // the playback API poll loads a new broadcast if there is one.
  const delay = RETRY_MS[Math.min(state.retry, RETRY_MS.length - 1)];
  state.retry += 1;
  setTimeout(() => {
    if (state.masterUrl && hls === engine() && !state.halted) hls.loadSource(state.masterUrl);  // <hls-video> starts the load
  }, delay);
}

// Reconnecting or ended: stop asking for playlists that cannot move, keep the last frame.
function halt() {
  if (state.halted) return;
  state.halted = true;
  engine()?.stopLoad();
  video()?.pause();  // the player shows no buffering spinner on a paused video
  dismissPlayerError();
}

// The broadcaster is back (same broadcast): load again from the live edge and play.
function resume() {
  if (!state.halted) return;
  state.halted = false;
  const hls = engine();
  if (hls) hls.startLoad(-1);
  else if (state.masterUrl) load(state.masterUrl);
  const v = video();
  if (v && hls && hls.liveSyncPosition != null) v.currentTime = hls.liveSyncPosition;
  tryPlay();
}

let endTimer: ReturnType<typeof setTimeout> | null = null;

// Ended: what is buffered plays out (the end of the broadcast, about a second), then the message.
function end() {
  const v = video();
  const finish = () => {
    if (endTimer) { clearTimeout(endTimer); endTimer = null; }
    if (state.status !== "ended") return;  // a new broadcast began meanwhile
    halt();
    show("ended", MESSAGES.ended);
    offerReplay();
  };
  if (state.halted || !v || v.paused || v.ended || !state.playing) { finish(); return; }
  if (endTimer) return;
  endTimer = setTimeout(finish, END_GRACE_MS);
  v.addEventListener("ended", finish, { once: true });
  v.addEventListener("waiting", finish, { once: true });
}

// A recorded broadcast that ended: its VOD master appears once sender-ingest closed it; then the
// ended message links the replay page (with this page's token, for a private stream).
async function offerReplay() {
  const generation = state.generationId;
  const master = state.playbackMaster;
  if (!generation || !master) return;
  const vod = master.replace(/\/master\.m3u8(?=\?|$)/, "/master-vod.m3u8");
  for (let attempt = 0; attempt < 10; attempt++) {
    let r: Response;
    try {
      r = await fetch(vod, { method: "HEAD", cache: "no-store" });
    } catch {
      return;
    }
    if (state.generationId !== generation || state.shown !== "ended") return;
    if (r.ok) {
      const url = `/watch/${encodeURIComponent(slug)}/${encodeURIComponent(generation)}${token ? `?token=${encodeURIComponent(token)}` : ""}`;
      state.replayUrl = url;
      const link = document.createElement("a");
      link.href = url;
      link.className = "replay-link";
      link.textContent = "Watch the replay";
      overlay.append(" ", link);
      return;
    }
    if (r.status !== 404) return;  // not recorded is 404 for good, but so is "not closed yet": a few tries
    await new Promise((done) => setTimeout(done, 1500));
  }
}

function liveEdgeDistance(): number | null {
  const hls = engine();
  const v = video();
  if (!hls || !v) return null;
  if (typeof hls.latency === "number" && hls.latency > 0) return hls.latency;
  const edge = hls.liveSyncPosition;
  return edge != null ? Math.max(0, edge - v.currentTime) : null;
}

function watchVideo() {
  const v = video();
  if (!v) { setTimeout(watchVideo, 50); return; }
  v.addEventListener("playing", () => {
    if (state.startupMs === null && state.loadedAt) {
      state.startupMs = performance.now() - state.loadedAt;
      report("startup", state.startupMs / 1000);
    }
    if (state.rebuffering) {
      report("rebuffer_end", (performance.now() - state.rebuffering) / 1000);
      state.rebuffering = 0;
    }
    if (!state.playing) report("playing");
    state.playing = true;
  });
  v.addEventListener("waiting", () => {
    if (state.playing && !state.rebuffering) {
      state.rebuffering = performance.now();
      state.rebuffers += 1;
      report("rebuffer", v.currentTime);
    }
  });
  v.addEventListener("ended", () => report("ended"));
}
watchVideo();

// Live-edge distance: reported, and held down (hls.js speeds up a little when behind; past
// DRIFT_MAX_S, e.g. after a stall or a background tab, jump to the edge). Not for a replay.
if (!replayMode) setInterval(() => {
  const d = liveEdgeDistance();
  state.lastEdge = d;
  const v = video();
  const hls = engine();
  if (d === null || !v || v.paused || !state.playing) return;
  report("live_edge", d);
  if (d > DRIFT_MAX_S && hls && hls.liveSyncPosition != null) {
    state.catchUps += 1;
    v.currentTime = hls.liveSyncPosition;
  }
}, EDGE_SAMPLE_MS);

// --- the playback API loop -----------------------------------------------------------------------

async function poll() {
  const url = `/api/streams/${encodeURIComponent(slug)}/playback${token ? `?token=${encodeURIComponent(token)}` : ""}`;
  try {
    const r = await fetch(url, { cache: "no-store" });
    if (r.status === 403) {
      show(null, token
        ? "This private stream's link has expired or is not valid. Ask for a new link."
        : "This stream is private: open it with the link (including its token) you were given.");
      root.dataset.status = "forbidden";
      return;
    }
    if (r.status === 404) {
      show(null, "There is no such stream.");
      root.dataset.status = "not-found";
      return;
    }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    apply((await r.json()) as Playback);
  } catch {
    if (!state.status) show(null, "Cannot reach the server; retrying…");
  } finally {
    const waiting = state.status !== "live" || state.shown === "reconnecting";
    if (root.dataset.status !== "forbidden" && root.dataset.status !== "not-found") setTimeout(poll, waiting ? POLL_WAITING_MS : POLL_MS);
  }
}

function apply(p: Playback) {
  const title = p.stream.title || p.stream.slug;
  if (titleEl.textContent !== title) { titleEl.textContent = title; document.title = `${title} · Sender`; }
  setViewers(p.viewers);
  const playable = (p.status === "live" || p.status === "ended") && !!p.master_url;
  if (p.master_url) state.playbackMaster = p.master_url;
  const newBroadcast = playable && (p.generation_id !== state.generationId || !state.masterUrl);
  if (newBroadcast) {
    // A new broadcast (or the first): load it. Same broadcast after a reconnect: hls.js keeps
    // going over the discontinuity.
    state.generationId = p.generation_id;
    if (p.status === "live") load(p.master_url as string);
  }
  state.status = p.status;
  if (p.status === "ended") {
    if (state.shown !== "ended") end();
    return;
  }
  if (p.status === "live" && !playable) { show("starting", MESSAGES.starting); return; }
  if (p.status === "live" && !p.publisher_connected && p.publisher_left_at) {
    // Away: the last frame stays under the message; loading resumes when it is back.
    halt();
    show("reconnecting", MESSAGES.reconnecting);
    return;
  }
  if (p.status === "live" && state.halted && !newBroadcast) resume();
  show(p.status, MESSAGES[p.status]);
}

// What the tests (and a curious viewer's console) read: plain JSON, no live objects.
declare global { interface Window { senderPlayer: () => Record<string, unknown> } }
window.senderPlayer = () => {
  const v = video();
  const hls = engine();
  return {
    sessionId, slug, status: state.status, pageStatus: root.dataset.status ?? null,
    generationId: state.generationId, masterUrl: state.masterUrl,
    engine: hls ? "hls.js" : (v && v.currentSrc ? "native" : null),
    hlsVersion: Hls.version, lowLatencyMode: hls ? hls.config.lowLatencyMode : null,
    videoSrc: v ? v.currentSrc || v.src : null,
    currentTime: v ? v.currentTime : null, paused: v ? v.paused : null, readyState: v ? v.readyState : null,
    videoWidth: v ? v.videoWidth : 0, videoHeight: v ? v.videoHeight : 0,
    latency: hls ? hls.latency : null, targetLatency: hls ? hls.targetLatency : null, liveEdge: liveEdgeDistance(),
    startupMs: state.startupMs, playing: state.playing, rebuffers: state.rebuffers, errors: state.errors,
    recoveries: state.recoveries, catchUps: state.catchUps, eventsSent: state.eventsSent,
    overlay: overlay.hidden ? "" : overlay.textContent,
    shown: state.shown, halted: state.halted,
    mode: replayMode ? "replay" : "live", duration: v ? v.duration : null,
    seekable: v && v.seekable.length ? [v.seekable.start(0), v.seekable.end(v.seekable.length - 1)] : null,
    replayEnded: state.replayEnded, replayUrl: state.replayUrl,
    playerError: playerEl.store.error ? String((playerEl.store.error as { message?: string }).message ?? "error") : null,
  };
};

// Replay mode: the recording the page names, played from its start; the page's own viewer count
// and title stay as rendered.
function startReplay() {
  state.generationId = root.dataset.generation ?? null;
  state.status = root.dataset.live === "true" ? "live" : "ended";
  const master = root.dataset.master as string;
  show("replay", "");
  badge.textContent = root.dataset.live === "true" ? "Live replay" : "Replay";
  load(master + (token ? `?token=${encodeURIComponent(token)}` : ""), replayConfig);
}

if (replayMode) {
  startReplay();
} else {
  show(null, "Loading…");
  poll();
}
