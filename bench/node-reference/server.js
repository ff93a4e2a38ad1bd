'use strict';
// The baseline `examples/loadgen.rs` is compared against: a Socket.IO 4.8 server on Node.js,
// as the deployed service runs it, doing the same work per message as chat-service on the
// load generator's path — JWT handshake, `conversation:join` into `conversation:<id>` rooms,
// `message:send` acknowledged and broadcast to the room as `message:new` (and `message`
// unless LEGACY_EVENTS=false) — but without persistence or validation, so it is an upper
// bound for the Node service, not a model of it.
//
//   npm ci && JWT_SECRET=... PORT=4200 node server.js
//   target/release/examples/loadgen --url http://127.0.0.1:4200 --secret ... --server-pid <pid>

const http = require('node:http');
const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');
const { Server } = require('socket.io');

const secret = process.env.JWT_SECRET;
if (!secret) throw new Error('JWT_SECRET is required');
const legacy = process.env.LEGACY_EVENTS !== 'false';
const port = Number(process.env.PORT || 4200);

const objectId = () => crypto.randomBytes(12).toString('hex');

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/api/conversations') {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const input = JSON.parse(body || '{}');
      const id = objectId();
      const now = new Date().toISOString();
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ conversation: { _id: id, id, agent_id: input.agentId, title: input.title, created_at: now } }));
    });
    return;
  }
  res.writeHead(404).end();
});

const io = new Server(server, { cors: { origin: '*' } });
io.use((socket, next) => {
  try {
    socket.user = jwt.verify(socket.handshake.auth.token, secret, { algorithms: ['HS256'] });
    next();
  } catch {
    next(new Error('Authentication failed'));
  }
});
io.on('connection', (socket) => {
  socket.on('conversation:join', (conversationId, ack) => {
    socket.join(`conversation:${conversationId}`);
    socket.emit('conversation:joined', { id: conversationId });
    if (typeof ack === 'function') ack({ ok: true });
  });
  socket.on('message:send', (data, ack) => {
    const id = objectId();
    const message = {
      _id: id,
      id,
      conversation_id: data.conversationId,
      thread_id: null,
      sender_type: 'user',
      sender_id: socket.user.sub,
      role: 'user',
      content: data.content,
      message_type: 'text',
      attachments: [],
      metadata: {},
      created_at: new Date().toISOString(),
    };
    const room = io.to(`conversation:${data.conversationId}`);
    if (legacy) room.emit('message', message);
    room.emit('message:new', { conversationId: data.conversationId, message });
    if (typeof ack === 'function') ack({ ok: true, message });
  });
});

server.listen(port, '127.0.0.1', () => console.log(`node reference listening on http://127.0.0.1:${port}`));
