"""Media and SDP helpers of the aiortc peer (aiortc_peer.py): a moving picture and a tone as
aiortc tracks, a VP8 clip in IVF for the Rust publisher, and the SDP checks of §20.3.3/§20.3.4."""
import asyncio
import fractions
import math
import os
import struct
import time
from array import array

import av
from aiortc import MediaStreamTrack


# ---------------------------------------------------------------------------------------------
# SDP checks (§20.3.4, §20.3.3)

def sdp_sections(sdp):
    """(session lines, [section lines]) of an SDP."""
    session, sections = [], []
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def sdp_checks(sdp):
    session, sections = sdp_sections(sdp)
    out = {
        "msid_semantic": any(line.startswith("a=msid-semantic") for line in session),
        "group_bundle": any(line.startswith("a=group:BUNDLE") for line in session),
        "bundle_mids": next((line.split()[1:] for line in session if line.startswith("a=group:BUNDLE")), []),
        "candidates": sum(1 for s in sections for line in s if line.startswith("a=candidate:")),
        "sections": [],
    }
    for s in sections:
        kind = s[0][2:].split()[0]
        port = s[0].split()[1]
        attr = {}
        direction = "sendrecv"
        msid, extmaps, codecs = None, [], []
        for line in s[1:]:
            if line in ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"):
                direction = line[2:]
            elif line.startswith("a=mid:"):
                attr["mid"] = line[6:]
            elif line.startswith("a=msid:"):
                bits = line[7:].split()
                msid = {"stream_id": bits[0], "track_id": bits[1] if len(bits) > 1 else ""}
            elif line.startswith("a=extmap:"):
                extmaps.append(line.split()[1])
            elif line.startswith("a=rtpmap:"):
                codecs.append(line.split()[1].split("/")[0])
        out["sections"].append({
            "kind": kind, "mid": attr.get("mid"), "port": port, "direction": direction,
            "msid": msid, "extmaps": extmaps, "codecs": codecs,
            "candidates": sum(1 for line in s if line.startswith("a=candidate:")),
            "ssrcs": sorted({line[7:].split()[0] for line in s if line.startswith("a=ssrc:")}),
        })
    return out


# ---------------------------------------------------------------------------------------------
# Media sources: a moving picture and a tone, so levels and bitrates are real.

class Picture(MediaStreamTrack):
    kind = "video"

    def __init__(self, width=320, height=240, fps=20):
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.n, self.start = 0, None

    def frame(self, n):
        f = av.VideoFrame(self.width, self.height, "yuv420p")
        for i, plane in enumerate(f.planes):
            rows = self.height if i == 0 else (self.height + 1) // 2
            width = plane.line_size
            if i == 0:  # a diagonal ramp that moves: every frame differs from the last
                row0 = bytes(((x * 2 + n * 6) & 0xFF) for x in range(width))
                data = b"".join(row0[(y * 3) % width:] + row0[:(y * 3) % width] for y in range(rows))
            else:
                data = bytes([(96 + i * 40 + n) & 0xFF]) * (width * rows)
            plane.update(data)
        f.pts = n * (90000 // self.fps)
        f.time_base = fractions.Fraction(1, 90000)
        return f

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.n / self.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        f = self.frame(self.n)
        self.n += 1
        return f


class Tone(MediaStreamTrack):
    """A 440 Hz sine at about -13 dBov (silence with tone=False), 20 ms frames."""
    kind = "audio"
    RATE = 48000

    def __init__(self, tone=True):
        super().__init__()
        amp = 0.3 * 32767 if tone else 0
        self.pcm = array("h", (int(amp * math.sin(2 * math.pi * 440 * i / self.RATE)) for i in range(self.RATE)))
        self.n, self.start = 0, None

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.n * 0.020 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = 960
        off = (self.n * samples) % self.RATE
        chunk = self.pcm[off:off + samples]
        if len(chunk) < samples:
            chunk += self.pcm[:samples - len(chunk)]
        f = av.AudioFrame(format="s16", layout="mono", samples=samples)
        f.planes[0].update(chunk.tobytes())
        f.pts = self.n * samples
        f.sample_rate = self.RATE
        f.time_base = fractions.Fraction(1, self.RATE)
        self.n += 1
        return f


def encode_ivf(path, frames, width, height, fps):
    """A VP8 clip with libvpx (through PyAV): a keyframe, then inter frames only."""
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, fps)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.bit_rate = 400_000
    ctx.gop_size = 100_000
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    pic = Picture(width, height, fps)
    packets = []
    for n in range(frames):
        f = pic.frame(n)
        f.pts, f.time_base = n, fractions.Fraction(1, fps)
        packets += [bytes(p) for p in ctx.encode(f)]
    packets += [bytes(p) for p in ctx.encode(None)]
    with open(path, "wb") as out:
        out.write(b"DKIF" + struct.pack("<HHIHHIIII", 0, 32, 0x30385056, width, height, fps, 1, len(packets), 0))
        for i, p in enumerate(packets):
            out.write(struct.pack("<IQ", len(p), i) + p)
    return os.path.getsize(path)
