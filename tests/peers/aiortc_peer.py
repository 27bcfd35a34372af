#!/usr/bin/env python3
"""An independent group-call peer for Confab, built on aiortc from docs/protocol.md alone.

It speaks Confab's binary protocol over WebSocket (§2.1: subprotocol confab.v1, one binary
protobuf ClientFrame/ServerFrame per message), with Python classes generated at start-up from
protocol/proto by grpcio-tools' bundled protoc into a temporary directory: Hello/Welcome (§4),
Register (§11.2), CreateConversation (§12.2), and the group-call messages of §20.3 (JoinCall,
Publish, SubscriberOffer/SubscriberAnswer, Trickle/ServerTrickle, ActiveSpeakers, LeaveCall).

The tests (tests/tests/aiortc.rs) drive it with one JSON command per line on stdin; it answers
each with one JSON line on stdout, `{"reply": ID, "ok": true, ...}` or `{"reply": ID, "ok": false,
"error": {"code", "field", "message"}}`. Diagnostics go to stderr. Commands (`op`):

  register      {username, password}            -> {user_id}
  create_group  {title, member_ids}             -> {conversation_id}
  join          {conversation_id, drop_every?}  -> {participant_id, participants}
                the subscriber connection answers every SubscriberOffer by itself; with
                drop_every N it drops every Nth video RTP packet before SRTP (a network loss)
                sees it, so aiortc NACKs it (retransmissions are counted when they come)
  publish       {audio?, video?, audio_codecs?, twcc?, width?, height?, fps?, tone?}
                -> {answer, offer: SDP checks, apply_error?} or the server's error (e.g. for a
                PCMU-only offer); apply_error when aiortc could not apply the server's answer
  publish_raw   {sdp}                           -> Publish with that offer as it is
  leave         {}                              -> {}   LeaveCall, both connections closed
  stats         {}                              -> everything measured so far (see Peer.stats)
  encode_ivf    {path, frames, width, height, fps} -> {bytes}: a VP8 clip (one keyframe, then
                inter frames) for the Rust publisher of the tests
  quit          {}

ICE uses 127.0.0.1 only and no STUN server: the tests stay on loopback. Received RTP is routed
by its sdes:mid header extension when it has one, as browsers do (RFC 8843 §9.2); aiortc 1.16
itself routes by SSRC and payload type only (see aiortc_hooks.py). Media sources and SDP checks
are in peer_media.py.
"""
import argparse
import asyncio
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import time

import aioice.ice

# Loopback only: aioice leaves 127.0.0.1 out of its host candidates by default.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

from aiortc import (  # noqa: E402
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc import codecs as aiortc_codecs  # noqa: E402
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters  # noqa: E402
from aiortc.sdp import candidate_from_sdp  # noqa: E402

import aiortc_hooks  # noqa: E402  (installs the hooks)
from peer_media import Picture, Tone, encode_ivf, sdp_checks  # noqa: E402

TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
PEER = None  # the one Peer of this process


def now_ms():
    return time.monotonic() * 1000.0


def gen_types(proto_dir):
    """protoc (bundled with grpcio-tools) → a temp dir on sys.path; returns (dir, modules)."""
    from grpc_tools import protoc
    out = tempfile.mkdtemp(prefix="confab-pb2-")
    files = sorted(glob.glob(os.path.join(proto_dir, "confab", "v1", "*.proto")))
    if not files or protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", *files]) != 0:
        raise SystemExit(f"protoc failed on {proto_dir}")
    sys.path.insert(0, out)
    from confab.v1 import calls_pb2, conversations_pb2, envelope_pb2, errors_pb2, session_pb2, accounts_pb2
    return out, dict(env=envelope_pb2, err=errors_pb2, ses=session_pb2, acc=accounts_pb2,
                     conv=conversations_pb2, calls=calls_pb2)


class ConfabError(Exception):
    def __init__(self, err, pb):
        super().__init__(err.message)
        self.json = {"code": pb["err"].ErrorCode.Name(err.code), "field": err.field, "message": err.message}


class Connection:
    """One WebSocket connection: requests correlated by request_id, events to a callback."""

    def __init__(self, pb, on_event):
        self.pb, self.on_event = pb, on_event
        self.next_id, self.pending, self.ws, self.reader = 1, {}, None, None

    async def open(self, url):
        import websockets
        self.ws = await websockets.connect(url, subprotocols=["confab.v1"], compression=None,
                                           max_size=2 ** 22)
        assert self.ws.subprotocol == "confab.v1", self.ws.subprotocol
        self.reader = asyncio.ensure_future(self.read())
        hello = self.pb["ses"].Hello(protocol_major=1, protocol_minor=0, client_name="aiortc-peer",
                                     client_version="1")
        return await self.request("hello", hello)

    async def read(self):
        try:
            async for msg in self.ws:
                sf = self.pb["env"].ServerFrame()
                sf.ParseFromString(msg)
                if sf.WhichOneof("frame") == "response":
                    fut = self.pending.pop(sf.response.request_id, None)
                    if fut and not fut.done():
                        fut.set_result(sf.response)
                elif sf.WhichOneof("frame") == "event":
                    kind = sf.event.WhichOneof("event")
                    if kind:
                        await self.on_event(kind, getattr(sf.event, kind))
        except Exception as e:  # the connection is gone: fail what waits
            log(f"connection reader stopped: {e!r}")
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed"))

    async def request(self, field, msg, timeout=10):
        rid, self.next_id = self.next_id, self.next_id + 1
        frame = self.pb["env"].ClientFrame(request_id=rid)
        getattr(frame, field).CopyFrom(msg)
        fut = asyncio.get_event_loop().create_future()
        self.pending[rid] = fut
        await self.ws.send(frame.SerializeToString())
        r = await asyncio.wait_for(fut, timeout)
        if r.WhichOneof("result") == "error":
            raise ConfabError(r.error, self.pb)
        return getattr(r, r.WhichOneof("result"))


def log(msg):
    print(f"[aiortc-peer] {msg}", file=sys.stderr, flush=True)



# ---------------------------------------------------------------------------------------------

class Peer:
    def __init__(self, pb, url):
        self.pb, self.url = pb, url
        self.conn = Connection(pb, self.on_event)
        self.conv = None
        self.drop_every = 0
        self.sub = None           # subscriber RTCPeerConnection
        self.pub = None           # publisher RTCPeerConnection
        self.has_remote = {}      # role -> bool
        self.queued = {"sub": [], "pub": []}
        self.offer_lock = asyncio.Lock()
        self.recv_stats = {}      # RTCRtpReceiver -> ReceiverStats
        self.publisher_routers = set()
        self.publisher_rtcp = dict(remb=0, remb_last_bps=0, twcc=0, nack=0, pli=0, rr=0, other=0)
        self.offers = []          # SDP checks of every SubscriberOffer, in order
        self.answer_checks = None
        self.msids = {}           # mid -> (stream_id, track_id) of the latest offer
        self.tracks = {}          # (mid, track_id) -> {kind, frames, first_frame_ms, ...}
        self.joins = []           # per JoinCall: timings
        self.events = {}          # event kind -> count
        self.speakers = []        # ActiveSpeakers seen: {at_ms, speakers}
        self.trickle = dict(subscriber=0, publisher=0, empty_mid=0, end=0)
        self.consumers = []

    # --- events -------------------------------------------------------------------------------

    async def on_event(self, kind, ev):
        self.events[kind] = self.events.get(kind, 0) + 1
        join = self.joins[-1] if self.joins else None
        if kind == "subscriber_offer" and ev.conversation_id == self.conv:
            asyncio.ensure_future(self.answer(ev.sdp_offer))
        elif kind == "server_trickle" and ev.conversation_id == self.conv:
            await self.server_candidate(ev)
        elif kind == "active_speakers":
            self.speakers.append({
                "at_ms": round(now_ms() - join["t0"]) if join else None,
                "join": len(self.joins),
                "speakers": [{"participant_id": s.participant_id, "user_id": s.user_id, "level": s.level}
                             for s in ev.speakers]})

    async def server_candidate(self, ev):
        calls = self.pb["calls"]
        role = "sub" if ev.role == calls.PEER_ROLE_SUBSCRIBER else "pub"
        self.trickle["subscriber" if role == "sub" else "publisher"] += 1
        c = ev.candidate
        if not c.candidate:
            self.trickle["end"] += 1
            return
        if not c.sdp_mid:
            self.trickle["empty_mid"] += 1
        text = c.candidate[len("candidate:"):] if c.candidate.startswith("candidate:") else c.candidate
        cand = candidate_from_sdp(text)
        cand.sdpMid = c.sdp_mid or None
        cand.sdpMLineIndex = c.sdp_m_line_index
        pc = self.sub if role == "sub" else self.pub
        if pc is None or not self.has_remote.get(role):
            self.queued[role].append(cand)
        else:
            await pc.addIceCandidate(cand)

    async def flush_candidates(self, role):
        pc = self.sub if role == "sub" else self.pub
        self.has_remote[role] = True
        for cand in self.queued[role]:
            await pc.addIceCandidate(cand)
        self.queued[role] = []

    # --- subscriber ---------------------------------------------------------------------------

    def new_subscriber(self):
        # max-bundle, as the server's offers BUNDLE every m-line (§20.3.4). Under aiortc's default
        # (balanced) a second new m-line of a kind takes the first one's transport and is marked
        # bundled before the BUNDLE group is applied, so it keeps a transport that is then closed
        # and its receiver never starts: two video m-lines new in one offer lost the second.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        join = self.joins[-1]

        @pc.on("connectionstatechange")
        def _state():
            if pc.connectionState == "connected" and join.get("connected_ms") is None:
                join["connected_ms"] = round(now_ms() - join["t0"])
                # aiortc starts a receiver only if DTLS is connected when its m-line is negotiated:
                # one negotiated during the handshake would wait for the next offer. Start them now
                # (idempotent for the ones already started).
                asyncio.ensure_future(pc._RTCPeerConnection__connect())

        @pc.on("track")
        def _track(track):
            mid = next((t.mid for t in pc.getTransceivers() if t.receiver.track is track), None)
            self.consumers.append(asyncio.ensure_future(self.consume(track, mid, join)))

        return pc

    async def consume(self, track, mid, join):
        while True:
            try:
                await track.recv()
            except Exception:
                return
            stream_id, track_id = self.msids.get(mid, ("", track.id))
            t = self.tracks.setdefault((mid, track_id), {
                "mid": mid, "kind": track.kind, "stream_id": stream_id, "track_id": track_id, "frames": 0,
                "first_frame_ms": None, "join": len(self.joins)})
            t["frames"] += 1
            current = self.joins[-1]
            if t["first_frame_ms"] is None:
                t["first_frame_ms"] = round(now_ms() - current["t0"])
            if track.kind == "video" and current.get("first_video_ms") is None:
                current["first_video_ms"] = round(now_ms() - current["t0"])

    async def answer(self, sdp):
        async with self.offer_lock:
            checks = sdp_checks(sdp)
            join = self.joins[-1]
            checks["at_ms"] = round(now_ms() - join["t0"])
            checks["join"] = len(self.joins)
            self.offers.append(checks)
            if join.get("offer_ms") is None:
                join["offer_ms"] = checks["at_ms"]
            for s in checks["sections"]:
                if s["msid"]:
                    self.msids[s["mid"]] = (s["msid"]["stream_id"], s["msid"]["track_id"])
            pc = self.sub
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                await self.flush_candidates("sub")
                calls = self.pb["calls"]
                await self.conn.request("subscriber_answer", calls.SubscriberAnswer(
                    conversation_id=self.conv, sdp_answer=pc.localDescription.sdp))
            except Exception as e:
                checks["answer_error"] = repr(e)
                log(f"answering a SubscriberOffer: {e!r}")

    # --- commands -------------------------------------------------------------------------------

    async def op_register(self, username, password):
        r = await self.conn.request("register", self.pb["acc"].Register(
            username=username, password=password, device_name="aiortc peer"))
        return {"user_id": r.me.user_id}

    async def op_create_group(self, title, member_ids):
        conv = self.pb["conv"]
        r = await self.conn.request("create_conversation", conv.CreateConversation(
            kind=conv.CONVERSATION_KIND_GROUP, title=title, member_ids=member_ids))
        return {"conversation_id": r.conversation_id}

    async def op_join(self, conversation_id, drop_every=0):
        self.conv, self.drop_every = conversation_id, drop_every
        self.joins.append({"t0": now_ms()})
        self.has_remote["sub"] = False
        self.queued["sub"] = []
        self.sub = self.new_subscriber()
        r = await self.conn.request("join_call", self.pb["calls"].JoinCall(conversation_id=conversation_id))
        return {"participant_id": r.participant_id,
                "participants": [{"participant_id": p.participant_id, "user_id": p.user_id,
                                  "tracks": [t.track_id for t in p.tracks]} for p in r.participants]}

    async def op_publish(self, audio=True, video=True, audio_codecs=None, twcc=False, width=320, height=240,
                         fps=20, tone=True):
        if twcc:
            ext = aiortc_codecs.HEADER_EXTENSIONS["video"]
            if not any(e.uri == TWCC_URI for e in ext):
                ext.append(RTCRtpHeaderExtensionParameters(id=5, uri=TWCC_URI))
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if audio:
            t = pc.addTransceiver(Tone(tone), direction="sendonly")
            if audio_codecs:
                caps = RTCRtpSender.getCapabilities("audio").codecs
                t.setCodecPreferences([c for c in caps if c.mimeType.split("/")[1] in audio_codecs])
        if video:
            pc.addTransceiver(Picture(width, height, fps), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        try:
            r = await self.conn.request("publish", self.pb["calls"].Publish(
                conversation_id=self.conv, sdp_offer=pc.localDescription.sdp))
        except ConfabError:
            await pc.close()
            raise
        if self.pub is not None:
            await self.pub.close()
        self.pub, self.has_remote["pub"] = pc, False
        self.answer_checks = sdp_checks(r.sdp_answer)
        out = {"answer": self.answer_checks, "offer": sdp_checks(pc.localDescription.sdp)}
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=r.sdp_answer, type="answer"))
        except Exception as e:  # the server answered something aiortc cannot apply
            out["apply_error"] = repr(e)
            return out
        await self.flush_candidates("pub")
        for t in pc.getTransceivers():
            self.publisher_routers.add(t.sender.transport._rtp_router)
        return out

    async def op_publish_raw(self, sdp):
        """Publish with an SDP offer as given (for refusals): the server's answer is not applied."""
        r = await self.conn.request("publish", self.pb["calls"].Publish(conversation_id=self.conv, sdp_offer=sdp))
        return {"answer": sdp_checks(r.sdp_answer)}

    async def op_leave(self):
        try:
            await self.conn.request("leave_call", self.pb["calls"].LeaveCall(conversation_id=self.conv))
        finally:
            for pc in (self.pub, self.sub):
                if pc is not None:
                    await pc.close()
            self.pub = self.sub = None
        return {}

    async def op_stats(self):
        tracks = list(self.tracks.values())
        receivers, transceivers = [], []
        if self.sub is not None:
            for t in self.sub.getTransceivers():
                tr = t.receiver.transport
                transceivers.append({"mid": t.mid, "current_direction": t.currentDirection,
                                     "started": t.receiver._RTCRtpReceiver__started,
                                     "dtls": tr.state, "ice": tr.transport.state,
                                     "local_cands": len(tr.transport.iceGatherer.getLocalCandidates()),
                                     "remote_ice": t in self.sub._RTCPeerConnection__remoteIce,
                                     "primary": tr is self.sub.getTransceivers()[0].receiver.transport})
                st = self.recv_stats.get(t.receiver)
                if st is not None:
                    receivers.append({"mid": t.mid, "kind": t.kind, **st.json()})
        joins = [{k: v for k, v in j.items() if k != "t0"} for j in self.joins]
        for j in joins:
            if j.get("first_video_ms") is not None and j.get("connected_ms") is not None:
                j["connected_to_first_video_ms"] = j["first_video_ms"] - j["connected_ms"]
        return {"tracks": tracks, "receivers": receivers, "joins": joins, "offers": self.offers,
                "publisher_rtcp": self.publisher_rtcp, "events": self.events, "active_speakers": self.speakers,
                "server_trickle": self.trickle, "transceivers": transceivers}

    async def op_encode_ivf(self, path, frames=60, width=320, height=240, fps=25):
        size = await asyncio.get_event_loop().run_in_executor(None, encode_ivf, path, frames, width, height, fps)
        return {"bytes": size}


async def main():
    global PEER
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the server's WebSocket URL, ws://HOST:PORT/v1/ws")
    ap.add_argument("--proto", required=True, help="the protocol/proto directory")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    gen_dir, pb = gen_types(args.proto)
    try:
        PEER = Peer(pb, args.url)
        aiortc_hooks.state.peer = PEER
        welcome = await PEER.conn.open(args.url)
        print(json.dumps({"ready": True, "server_version": welcome.server_version}), flush=True)
        loop = asyncio.get_event_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = json.loads(line)
            rid, op = cmd.pop("id", None), cmd.pop("op")
            if op == "quit":
                break
            try:
                result = await getattr(PEER, f"op_{op}")(**cmd)
                out = {"reply": rid, "ok": True, **result}
            except ConfabError as e:
                out = {"reply": rid, "ok": False, "error": e.json}
            except Exception as e:
                log(f"{op} failed: {e!r}")
                out = {"reply": rid, "ok": False, "error": {"code": "PEER", "field": "", "message": repr(e)}}
            print(json.dumps(out), flush=True)
        for pc in (PEER.pub, PEER.sub):
            if pc is not None:
                await pc.close()
    finally:
        shutil.rmtree(gen_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
