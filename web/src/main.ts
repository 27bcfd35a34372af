// The meeting page, served by confab-server at /call/ROOM_ID: the invite token and the name to
// show come in the URL's fragment (`#token=…&name=…`), which never reaches a server. For
// development, `#access_token=…&conversation=ID` joins a conversation's group call instead.
// `window.confab` is a small hook for tests (web/tests/browser.mjs).

import type { JsonValue } from "@bufbuild/protobuf";
import { Call, type CallTarget, type CallView } from "./call";
import { Connection, RequestError, type Credentials } from "./connection";
import { RoomRole, VideoQuality } from "./gen/confab/v1/calls_pb";

const $ = (id: string) => document.getElementById(id) as HTMLElement;

function params(): { target: CallTarget; creds: Credentials } | string {
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const conversation = hash.get("conversation");
  if (conversation && hash.get("access_token")) {
    if (!/^\d+$/.test(conversation)) return "the conversation in the link is not a number";
    return { target: { conversationId: BigInt(conversation) }, creds: { accessToken: hash.get("access_token") ?? "" } };
  }
  const roomId = decodeURIComponent(location.pathname.replace(/^\/call\//, "").replace(/\/$/, ""));
  if (!/^[0-9a-f]{32}$/.test(roomId)) return "this is not a meeting link (no room in it)";
  const token = hash.get("token");
  if (!token) return "this meeting link has no invite token";
  const name = (hash.get("name") ?? localStorage.getItem("confab.name") ?? "").trim();
  return { target: { roomId }, creds: { roomToken: token, displayName: name } };
}

/** Tiles, one per other participant, with their name and video. */
class Tiles implements CallView {
  private tiles = new Map<string, { el: HTMLElement; video: HTMLVideoElement; tracks: Set<string> }>();

  status(text: string) {
    $("status").textContent = text;
  }

  private tile(participantId: string, displayName?: string) {
    let t = this.tiles.get(participantId);
    if (!t) {
      const el = document.createElement("figure");
      el.className = "tile";
      el.dataset.participant = participantId;
      const video = document.createElement("video");
      video.autoplay = true;
      video.playsInline = true;
      video.muted = true;
      const caption = document.createElement("figcaption");
      el.append(video, caption);
      $("tiles").append(el);
      t = { el, video, tracks: new Set() };
      this.tiles.set(participantId, t);
    }
    if (displayName !== undefined) (t.el.querySelector("figcaption") as HTMLElement).textContent = displayName;
    return t;
  }

  participant(p: { participantId: string; displayName: string }) {
    this.tile(p.participantId, p.displayName);
  }

  gone(participantId: string) {
    this.tiles.get(participantId)?.el.remove();
    this.tiles.delete(participantId);
  }

  video(participantId: string, trackId: string, stream: MediaStream | null) {
    const t = this.tile(participantId);
    if (stream) {
      t.tracks.add(trackId);
      t.video.srcObject = stream;
    } else if (t.tracks.delete(trackId) && t.tracks.size === 0) {
      t.video.srcObject = null;
    }
  }

  private sounds = new Map<string, HTMLAudioElement>();

  /** Other participants' audio, one element per track; a browser that blocks autoplay plays it
   * after the next click. */
  audio(trackId: string, stream: MediaStream | null) {
    this.sounds.get(trackId)?.remove();
    this.sounds.delete(trackId);
    if (!stream) return;
    const a = document.createElement("audio");
    a.autoplay = true;
    a.srcObject = stream;
    $("sounds").append(a);
    this.sounds.set(trackId, a);
    a.play().catch(() => {
      const before = $("status").textContent ?? "";
      this.status("click anywhere to hear the others");
      document.addEventListener(
        "click",
        () => {
          this.status(before);
          this.sounds.forEach((s) => void s.play().catch(() => {}));
        },
        { once: true },
      );
    });
  }

  self(stream: MediaStream) {
    const v = $("self") as HTMLVideoElement;
    v.srcObject = stream;
  }
}

/** The test hook: `window.confab`. */
interface Hook {
  state: () => JsonValue;
  stats: () => Promise<Record<string, unknown>[]>;
  sent: () => Promise<Record<string, unknown>[]>;
  events: (kind?: string) => JsonValue[];
  setQuality: (trackId: string, quality: keyof typeof VideoQuality) => Promise<JsonValue>;
  request: (name: string, msg: JsonValue) => Promise<JsonValue>;
}

declare global {
  interface Window {
    confab?: Hook;
  }
}

async function main() {
  const view = new Tiles();
  const p = params();
  if (typeof p === "string") {
    view.status(p);
    return;
  }
  // A guest who was here before (this tab, a reload) comes back with its resume token: the same
  // guest, no invite use, its lobby admission kept (§25.3); else with the link's invite.
  const resumeKey = "roomId" in p.target ? `confab.resume.${p.target.roomId}` : "";
  const resume = resumeKey ? sessionStorage.getItem(resumeKey) : null;
  const attempts: (() => Promise<Credentials>)[] = [];
  if (resume) attempts.push(async () => ({ roomToken: resume }));
  attempts.push(async () => {
    if (p.creds.roomToken !== undefined && !p.creds.displayName) p.creds.displayName = await askName();
    view.status("connecting…");
    return p.creds;
  });
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  view.status("connecting…");
  let error = "";
  let conn: Connection;
  try {
    conn = await Connection.open(`${scheme}//${location.host}/v1/ws`, attempts);
  } catch (e) {
    view.status(helloRefused(e));
    return;
  }
  if (resumeKey && conn.welcome.guest?.resumeToken) sessionStorage.setItem(resumeKey, conn.welcome.guest.resumeToken);
  const call = new Call(conn, p.target, view, conn.welcome.guest?.role !== RoomRole.GUEST);
  conn.onEvent = (e) => void call.handle(e).catch((err) => console.error(err));
  conn.onClose = (code, reason) => view.status(`disconnected (${code}${reason ? `: ${reason}` : ""})`);
  const auth = conn.welcome.auth;
  const me = conn.welcome.guest?.displayName || p.creds.displayName || (auth ? `user ${auth.userId}` : "");
  $("me").textContent = me;
  window.confab = {
    state: () => ({
      participantId: call.participantId,
      inLobby: call.inLobby,
      publishing: call.publishing,
      guest: !!conn.welcome.guest,
      displayName: me,
      error,
    }),
    stats: () => call.stats(),
    sent: () => call.sent(),
    events: (kind) =>
      call.log
        .filter((e) => !kind || e.kind === kind)
        .map((e) => JSON.parse(JSON.stringify({ kind: e.kind, ...(e.value as object) }, bigints)) as JsonValue),
    setQuality: (trackId, quality) =>
      call.setQuality(trackId, VideoQuality[quality]).then(
        () => ({}),
        (e: RequestError) => ({ error: e.code }),
      ),
    request: (name, msg) => conn.requestJson(name, msg),
  };
  $("leave").onclick = () => {
    conn.close();
    view.status("you left the call");
  };
  try {
    await call.join();
  } catch (e) {
    error = e instanceof RequestError ? e.code : String(e);
    view.status(`could not join: ${e}`);
  }
}

/** What to tell a user whose Hello was refused (§25.3). */
function helloRefused(e: unknown): string {
  if (!(e instanceof RequestError)) return String(e);
  switch (e.code) {
    case "UNAUTHENTICATED":
      return "this invite is not valid any more (expired or revoked)";
    case "FAILED_PRECONDITION":
      return "this invite has been used as many times as it may be";
    case "INVALID_ARGUMENT":
      return e.field === "hello.display_name" ? "that name is empty or too long" : String(e);
    default:
      return String(e);
  }
}

function bigints(_key: string, v: unknown) {
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string" && _key === "$typeName") return undefined;
  return v;
}

function askName(): Promise<string> {
  const form = $("name-form") as HTMLFormElement;
  form.hidden = false;
  return new Promise((resolve) => {
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const name = ($("name") as HTMLInputElement).value.trim();
      if (!name) return;
      localStorage.setItem("confab.name", name);
      form.hidden = true;
      resolve(name);
    };
  });
}

void main();
