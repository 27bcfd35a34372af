// The fast comparison peer for confab-bench (docs/benchmarks.md): a pub/sub chat relay on Bun's
// built-in WebSocket server (uWebSockets inside), written the way the Socket.IO peer is (JWT
// login over HTTP, rooms, acknowledged sends) but with a compact binary protocol, so that W2, W3
// and W5 show Confab beside the fastest single-process fan-out installable here. Messages are
// relayed, not stored: the peer does strictly less work per message than Confab.
//
//   bun server.js [--host 127.0.0.1] [--port 7901]
//
// HTTP:      GET /healthz; POST /api/login {"username": "..."} -> {"token": "<HS256 JWT>"}
// WebSocket: GET /ws?token=JWT. Binary messages, integers little-endian:
//   client JOIN 0x01 u32 req, room (UTF-8, rest)         -> ACK 0x81 u32 req, u64 0
//   client SEND 0x02 u32 req, u16 room length, room, text -> ACK 0x81 u32 req, u64 id, and to every
//          socket in the room (the sender's included), MSG 0x82 u64 id, u64 at (ms),
//          u16 sender length, sender, u16 room length, room, text
//   a refused request gets ERR 0x83 u32 req.
'use strict';

const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '7901'));
const secret = crypto.randomBytes(32);
const MAX_BODY = 4096;
const MAX_TEXT = 16384;
const enc = new TextEncoder();
const dec = new TextDecoder();

function ack(req, id) {
  const b = new DataView(new ArrayBuffer(13));
  b.setUint8(0, 0x81);
  b.setUint32(1, req, true);
  b.setBigUint64(5, BigInt(id), true);
  return b.buffer;
}

function refuse(req) {
  const b = new DataView(new ArrayBuffer(5));
  b.setUint8(0, 0x83);
  b.setUint32(1, req, true);
  return b.buffer;
}

let nextId = 1;
const server = Bun.serve({
  hostname: host,
  port,
  async fetch(req, srv) {
    const url = new URL(req.url);
    if (req.method === 'GET' && url.pathname === '/healthz') return new Response('ok\n');
    if (req.method === 'GET' && url.pathname === '/ws') {
      let user;
      try {
        user = jwt.verify(url.searchParams.get('token') || '', secret, { algorithms: ['HS256'] }).sub;
      } catch {
        return new Response('unauthenticated', { status: 401 });
      }
      if (srv.upgrade(req, { data: { user, userBytes: enc.encode(user), rooms: new Set() } })) return undefined;
      return new Response('upgrade required', { status: 426 });
    }
    if (req.method !== 'POST' || url.pathname !== '/api/login') return new Response(null, { status: 404 });
    const body = await req.text();
    let username;
    try {
      username = body.length <= MAX_BODY ? JSON.parse(body).username : undefined;
    } catch {
      username = undefined;
    }
    if (typeof username !== 'string' || username.length === 0 || username.length > 64) {
      return Response.json({ error: 'username required' }, { status: 400 });
    }
    return Response.json({ token: jwt.sign({ sub: username }, secret, { algorithm: 'HS256', expiresIn: '1h' }) });
  },
  websocket: {
    maxPayloadLength: 65536,
    idleTimeout: 120,
    message(ws, data) {
      if (typeof data === 'string' || data.length < 5) return ws.close(1003, 'binary frames only');
      const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
      const req = v.getUint32(1, true);
      if (data[0] === 0x01) {
        const room = dec.decode(data.subarray(5));
        ws.subscribe(room);
        ws.data.rooms.add(room);
        ws.send(ack(req, 0));
      } else if (data[0] === 0x02 && data.length >= 7) {
        const len = v.getUint16(5, true);
        const roomBytes = data.subarray(7, 7 + len);
        const text = data.subarray(7 + len);
        const room = dec.decode(roomBytes);
        if (text.length > MAX_TEXT || !ws.data.rooms.has(room)) return ws.send(refuse(req));
        const id = nextId++;
        const sender = ws.data.userBytes;
        const out = new Uint8Array(1 + 8 + 8 + 2 + sender.length + 2 + roomBytes.length + text.length);
        const o = new DataView(out.buffer);
        let at = 0;
        o.setUint8(at, 0x82); at += 1;
        o.setBigUint64(at, BigInt(id), true); at += 8;
        o.setBigUint64(at, BigInt(Date.now()), true); at += 8;
        o.setUint16(at, sender.length, true); at += 2;
        out.set(sender, at); at += sender.length;
        o.setUint16(at, roomBytes.length, true); at += 2;
        out.set(roomBytes, at); at += roomBytes.length;
        out.set(text, at);
        server.publish(room, out);
        ws.send(ack(req, id));
      } else {
        ws.send(refuse(req));
      }
    },
  },
});

console.log(`bun peer listening on http://${host}:${server.port} (bun ${Bun.version})`);

function stop() {
  server.stop(true);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
