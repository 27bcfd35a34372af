// The Socket.IO comparison peer for confab-bench (docs/benchmarks.md): a chat relay written the way
// the seed backends are (Node, Socket.IO, JWT in the handshake, rooms). Messages are relayed, not
// stored: the peer does strictly less work per message than Confab, which commits every message.
//
//   node server.js [--host 127.0.0.1] [--port 7900]
//
// HTTP:      POST /api/login {"username": "..."}  ->  {"token": "<HS256 JWT>"}
// Socket.IO: connect with auth {token}; "join_room" (room, ack) -> ack({ok: true});
//            "send_message" ({room, text}, ack) -> every socket in the room (the sender's included)
//            gets "receive_message" {id, room, sender, text, at}; ack({id}).
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');
const { Server } = require('socket.io');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '7900'));
const secret = crypto.randomBytes(32);
const MAX_BODY = 4096;
const MAX_TEXT = 16384;

function json(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
}

const httpServer = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (req.method !== 'POST' || req.url !== '/api/login') {
    res.writeHead(404).end();
    return;
  }
  let body = '';
  req.on('data', (chunk) => {
    body += chunk;
    if (body.length > MAX_BODY) req.destroy();
  });
  req.on('end', () => {
    let username;
    try {
      username = JSON.parse(body).username;
    } catch {
      username = undefined;
    }
    if (typeof username !== 'string' || username.length === 0 || username.length > 64) {
      json(res, 400, { error: 'username required' });
      return;
    }
    json(res, 200, { token: jwt.sign({ sub: username }, secret, { algorithm: 'HS256', expiresIn: '1h' }) });
  });
});

const io = new Server(httpServer, { transports: ['websocket'], serveClient: false, maxHttpBufferSize: 65536 });

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  try {
    socket.data.user = jwt.verify(token, secret, { algorithms: ['HS256'] }).sub;
    next();
  } catch {
    next(new Error('unauthenticated'));
  }
});

let nextId = 1;
io.on('connection', (socket) => {
  socket.on('join_room', (room, ack) => {
    if (typeof room !== 'string' || typeof ack !== 'function') return;
    socket.join(room);
    ack({ ok: true });
  });
  socket.on('send_message', (msg, ack) => {
    if (!msg || typeof msg.room !== 'string' || typeof msg.text !== 'string' || typeof ack !== 'function') return;
    if (msg.text.length > MAX_TEXT || !socket.rooms.has(msg.room)) {
      ack({ error: 'refused' });
      return;
    }
    const id = nextId++;
    io.to(msg.room).emit('receive_message', { id, room: msg.room, sender: socket.data.user, text: msg.text, at: Date.now() });
    ack({ id });
  });
});

httpServer.listen(port, host, () => {
  console.log(`socket.io peer listening on http://${host}:${port} (node ${process.version})`);
});

function stop() {
  io.close();
  httpServer.close(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
