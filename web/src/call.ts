// A group call through the SFU (docs/protocol.md §20.3) with the two peer connections of
// §20.3.1: the publisher (this page offers with Publish: camera and microphone, the camera in
// three simulcast layers, rid q/h/f, §20.3.10) and the subscriber (the server offers with
// SubscriberOffer, this page answers); ICE candidates trickle both ways (§20.3.5).

import { RequestError, type Connection, type RequestValue } from "./connection";
import type { Event } from "./gen/confab/v1/envelope_pb";
import { PeerRole, VideoQuality, type IceServer, type Participant } from "./gen/confab/v1/calls_pb";

/** Which call: a meeting room's (§25) or, for development, a conversation's (§20.3). */
export type CallTarget = { roomId: string } | { conversationId: bigint };

/** The simulcast layers the camera is sent in, lowest first (RFC 8853 rids). */
export const SIMULCAST: RTCRtpEncodingParameters[] = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_200_000 },
];

/** What the page shows of a call, through {@link Call.view}. */
export interface CallView {
  status(text: string): void;
  participant(p: { participantId: string; displayName: string }): void;
  gone(participantId: string): void;
  video(participantId: string, trackId: string, stream: MediaStream | null): void;
  audio(trackId: string, stream: MediaStream | null): void;
  self(stream: MediaStream): void;
}

interface Leg {
  pc: RTCPeerConnection;
  ready: boolean;
  queued: RTCIceCandidateInit[];
}

/** One of the server's tracks as the subscriber connection carries it (§20.3.3). */
export interface RemoteTrack {
  trackId: string;
  participantId: string;
  mid: string;
}

export class Call {
  participantId = "";
  inLobby = false;
  publishing = false;
  private iceServers: RTCIceServer[] = [];
  private pub: Leg | null = null;
  private sub: Leg | null = null;
  private offers: Promise<void> = Promise.resolve();
  /** Publisher candidates gathered before the first Publish was answered. */
  private pendingPub: (() => void)[] = [];
  /** mid → the room's track, from the last SubscriberOffer's a=msid lines. */
  readonly remote = new Map<string, RemoteTrack>();
  /** Every event of this call, in order, as `{ kind, ...fields }` for the test hook. */
  readonly log: { kind: string; value: unknown }[] = [];

  /** `sends`: whether this participant may publish (a room's GUEST only watches, §25.2). */
  constructor(
    private readonly conn: Connection,
    readonly target: CallTarget,
    private readonly view: CallView,
    private readonly sends = true,
  ) {}

  private scope(): { roomId: string; conversationId: bigint } {
    return "roomId" in this.target
      ? { roomId: this.target.roomId, conversationId: 0n }
      : { roomId: "", conversationId: this.target.conversationId };
  }

  private mine(e: { roomId?: string; conversationId?: bigint }): boolean {
    const s = this.scope();
    return s.roomId ? e.roomId === s.roomId : e.conversationId === s.conversationId;
  }

  /** JoinCall; in a room's lobby, waits for a LobbyDecision (see {@link handle}). A device
   * still in the call (a reloaded page within the reconnect grace, §20.3.7) leaves it first: its
   * old connections are gone with the old page. */
  async join(): Promise<void> {
    let r;
    try {
      r = await this.conn.request("joinCall", this.scope() as RequestValue<"joinCall">);
    } catch (e) {
      if (!(e instanceof RequestError) || e.code !== "FAILED_PRECONDITION") throw e;
      await this.conn.request("leaveCall", this.scope()).catch(() => {});
      r = await this.conn.request("joinCall", this.scope() as RequestValue<"joinCall">);
    }
    if (r.inLobby) {
      this.inLobby = true;
      this.view.status("waiting to be admitted…");
      return;
    }
    this.inLobby = false;
    this.participantId = r.participantId;
    this.iceServers = r.iceServers.map(ice);
    for (const p of r.participants) this.joined(p);
    if (!this.sends) {
      this.view.status("in the call (watching)");
      return;
    }
    this.view.status("in the call");
    // Without a camera, or over the room's publishers: still in the call, watching.
    await this.publish().catch((e) => this.view.status(`in the call, not sending (${e})`));
  }

  private joined(p: Participant) {
    this.view.participant({ participantId: p.participantId, displayName: p.displayName || `user ${p.userId}` });
  }

  private leg(role: PeerRole): Leg {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    const leg: Leg = { pc, ready: false, queued: [] };
    pc.onicecandidate = (ev) => {
      if (!ev.candidate || !ev.candidate.candidate) return;
      const c = ev.candidate.toJSON();
      const trickle = () =>
        this.conn
          .request("trickle", {
            ...this.scope(),
            role,
            candidate: { candidate: c.candidate ?? "", sdpMid: c.sdpMid ?? "", sdpMLineIndex: c.sdpMLineIndex ?? 0 },
          })
          .catch((e) => console.warn("trickle", e));
      // The server refuses publisher candidates before the first Publish is answered.
      if (role === PeerRole.PUBLISHER && !this.publishing) this.pendingPub.push(trickle);
      else void trickle();
    };
    return leg;
  }

  /** The camera and microphone on the publisher connection: Publish with the offer. */
  private async publish() {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15 } },
    });
    this.view.self(stream);
    this.pub = this.leg(PeerRole.PUBLISHER);
    for (const track of stream.getTracks()) {
      const init: RTCRtpTransceiverInit = { direction: "sendonly", streams: [stream] };
      if (track.kind === "video") init.sendEncodings = SIMULCAST;
      this.pub.pc.addTransceiver(track, init);
    }
    const offer = await this.pub.pc.createOffer();
    await this.pub.pc.setLocalDescription(offer);
    const r = await this.conn.request("publish", { ...this.scope(), sdpOffer: offer.sdp ?? "" });
    await this.pub.pc.setRemoteDescription({ type: "answer", sdp: r.sdpAnswer });
    await ready(this.pub);
    this.publishing = true;
    for (const t of this.pendingPub.splice(0)) t();
  }

  /** A SubscriberOffer: apply it, answer, and note which mid carries which room track. */
  private async answer(sdp: string) {
    const sub = this.subscriber();
    const pc = sub.pc;
    this.remote.clear();
    for (const t of msids(sdp)) this.remote.set(t.mid, t);
    await pc.setRemoteDescription({ type: "offer", sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await this.conn.request("subscriberAnswer", { ...this.scope(), sdpAnswer: answer.sdp ?? "" });
    await ready(sub);
  }

  private subscriber(): Leg {
    if (!this.sub) {
      this.sub = this.leg(PeerRole.SUBSCRIBER);
      this.sub.pc.ontrack = (ev) => this.track(ev);
    }
    return this.sub;
  }

  private track(ev: RTCTrackEvent) {
    const t = this.remote.get(ev.transceiver.mid ?? "");
    if (!t) return;
    const stream = new MediaStream([ev.track]);
    if (ev.track.kind === "audio") {
      this.view.audio(t.trackId, stream);
      ev.track.onended = () => this.view.audio(t.trackId, null);
      return;
    }
    this.view.video(t.participantId, t.trackId, stream);
    ev.track.onended = () => this.view.video(t.participantId, t.trackId, null);
  }

  /** One event of the connection; those of other calls are ignored. */
  async handle(e: Event): Promise<void> {
    const ev = e.event;
    if (!ev.case) return;
    const v = ev.value as { roomId?: string; conversationId?: bigint };
    if ("roomId" in v || "conversationId" in v) {
      if (!this.mine(v)) return;
    }
    this.log.push({ kind: ev.case, value: ev.value });
    switch (ev.case) {
      case "subscriberOffer": {
        const sdp = ev.value.sdpOffer;
        this.offers = this.offers.then(() => this.answer(sdp)).catch((err) => console.error("subscriber offer", err));
        break;
      }
      case "serverTrickle": {
        const c = ev.value.candidate;
        if (!c || !c.candidate) break;
        const init = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
        const leg = ev.value.role === PeerRole.PUBLISHER ? this.pub : this.subscriber();
        // Kept until the connection has the server's description.
        if (leg?.ready) await leg.pc.addIceCandidate(init).catch(() => {});
        else leg?.queued.push(init);
        break;
      }
      case "participantJoined":
        if (ev.value.participant) this.joined(ev.value.participant);
        break;
      case "participantLeft":
        this.view.gone(ev.value.participantId);
        break;
      case "trackUnpublished":
        this.view.video(ev.value.participantId, ev.value.trackId, null);
        this.view.audio(ev.value.trackId, null);
        break;
      case "lobbyDecision":
        if (ev.value.admitted && this.inLobby) await this.join();
        else if (!ev.value.admitted && this.inLobby) this.view.status("the moderators did not admit you");
        break;
      case "participantRemoved":
        if (ev.value.participantId === this.participantId) this.end("you were removed from the call");
        else this.view.gone(ev.value.participantId);
        break;
      case "roomClosed":
        this.end("the meeting is over");
        break;
      default:
        break;
    }
  }

  private end(why: string) {
    this.pub?.pc.close();
    this.sub?.pc.close();
    this.view.status(why);
  }

  /** SetSubscribedQuality for one video track this page receives (§20.3.10). */
  setQuality(trackId: string, quality: VideoQuality) {
    return this.conn.request("setSubscribedQuality", { ...this.scope(), trackId, quality });
  }

  /** Inbound audio and video as getStats reports them, one entry per room track. */
  async stats() {
    const out: Record<string, unknown>[] = [];
    if (!this.sub) return out;
    const report = await this.sub.pc.getStats();
    report.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      const t = this.remote.get(s.mid ?? "");
      out.push({
        kind: s.kind,
        trackId: t?.trackId ?? "",
        participantId: t?.participantId ?? "",
        mid: s.mid,
        framesDecoded: s.framesDecoded ?? 0,
        frameWidth: s.frameWidth ?? 0,
        frameHeight: s.frameHeight ?? 0,
        packetsReceived: s.packetsReceived ?? 0,
        bytesReceived: s.bytesReceived ?? 0,
      });
    });
    return out;
  }

  /** Outbound video layers of the publisher connection (rid, size, frames sent, why limited). */
  async sent() {
    const out: Record<string, unknown>[] = [];
    if (!this.pub) return out;
    (await this.pub.pc.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video") {
        out.push({
          rid: s.rid ?? "",
          frameWidth: s.frameWidth ?? 0,
          framesSent: s.framesSent ?? 0,
          active: s.active,
          qualityLimitationReason: s.qualityLimitationReason ?? "",
        });
      }
    });
    return out;
  }
}

function ice(s: IceServer): RTCIceServer {
  return s.username ? { urls: s.urls, username: s.username, credential: s.credential } : { urls: s.urls };
}

async function ready(leg: Leg) {
  if (leg.ready) return;
  leg.ready = true;
  for (const c of leg.queued.splice(0)) await leg.pc.addIceCandidate(c).catch(() => {});
}

/** Each m-section's mid with its `a=msid:STREAM TRACK` (the publisher's participant id and the
 * room's track id, §20.3.3). */
export function msids(sdp: string): RemoteTrack[] {
  const out: RemoteTrack[] = [];
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const mid = /^a=mid:(\S+)/m.exec(section)?.[1];
    const msid = /^a=msid:(\S+) (\S+)/m.exec(section);
    if (mid && msid) out.push({ mid, participantId: msid[1], trackId: msid[2] });
  }
  return out;
}
