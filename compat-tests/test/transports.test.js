'use strict';
// Each transport on its own and together: HTTP long-polling only, WebSocket only, and
// polling upgraded to WebSocket (socket.io-client's default). Clients on different
// transports share rooms.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck } = require('../helpers/harness');

const ctx = useServer();
const COMPANY = 'company-transports';
const alice = userToken('tr-alice', COMPANY);
const bob = userToken('tr-bob', COMPANY);

/** Sends from `from`, checks `to` receives it, and returns the stored message. */
async function roundTrip(conversationId, from, to, content) {
  const ack = await emitAck(from, 'message:send', { conversationId, content });
  assert.equal(ack.ok, true);
  const fresh = await to.rec.waitFor('message:new', (e) => e.message.id === ack.message.id);
  assert.equal(fresh.message.content, content);
  await to.rec.waitFor('message', (m) => m.id === ack.message.id);
  return ack.message;
}

function upgraded(socket) {
  const engine = socket.io.engine;
  if (engine.transport.name === 'websocket') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no upgrade to websocket')), 5_000);
    engine.once('upgrade', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

test('polling only', async () => {
  const conv = await ctx.createConversation(alice);
  const p = await ctx.joined(conv.id, { token: alice, transports: ['polling'] });
  const ws = await ctx.joined(conv.id, { token: bob, transports: ['websocket'] });
  assert.equal(p.io.engine.transport.name, 'polling');
  await roundTrip(conv.id, p, ws, 'from polling');
  await roundTrip(conv.id, ws, p, 'to polling');
  ws.emit('typing', { conversationId: conv.id, isTyping: true });
  await p.rec.waitFor('user:typing');
  // Several events in flight at once over one polling connection.
  const acks = await Promise.all(
    Array.from({ length: 5 }, (_, i) => emitAck(p, 'message:send', { conversationId: conv.id, content: `batch ${i}` })),
  );
  assert.ok(acks.every((a) => a.ok));
  for (let i = 0; i < 5; i++) await ws.rec.waitFor('message:new', (e) => e.message.content === `batch ${i}`);
  assert.equal(p.io.engine.transport.name, 'polling');
});

test('websocket only', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice, transports: ['websocket'] });
  const b = await ctx.joined(conv.id, { token: bob, transports: ['websocket'] });
  assert.equal(a.io.engine.transport.name, 'websocket');
  await roundTrip(conv.id, a, b, 'websocket both ways');
  await roundTrip(conv.id, b, a, 'and back');
});

test('polling, then upgraded to websocket', async () => {
  const conv = await ctx.createConversation(alice);
  const b = await ctx.joined(conv.id, { token: bob, transports: ['polling'] });
  const s = ctx.socket({ token: alice, transports: ['polling', 'websocket'] });
  // The engine opens over polling and probes websocket in the background.
  assert.equal(s.io.engine.transport.name, 'polling');
  const upgrade = upgraded(s);
  await new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('connect_error', reject);
  });
  // Work started around the upgrade is not lost across it.
  const joining = emitAck(s, 'conversation:join', conv.id);
  await upgrade;
  assert.equal(s.io.engine.transport.name, 'websocket');
  assert.equal((await joining).ok, true);
  await roundTrip(conv.id, s, b, 'after upgrade');
  await roundTrip(conv.id, b, s, 'to the upgraded socket');
  assert.ok(s.connected);
});

test('the dashboard\'s websocket-first setting connects over websocket and shares rooms with polling', async () => {
  // socket.io-client tries the transports in order: with websocket first it opens a websocket.
  const conv = await ctx.createConversation(alice);
  const s = await ctx.joined(conv.id, { token: alice });
  assert.equal(s.io.engine.transport.name, 'websocket');
  const b = await ctx.joined(conv.id, { token: bob, transports: ['polling'] });
  await roundTrip(conv.id, b, s, 'polling to websocket-first');
});

test('the Engine.IO handshake carries the reference defaults and CORS for browser origins', async () => {
  const origin = 'https://dashboard.example.test';
  const res = await fetch(`${ctx.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: origin } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), origin);
  assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
  const body = await res.text();
  assert.equal(body[0], '0', `open packet expected: ${body}`);
  const open = JSON.parse(body.slice(1));
  assert.equal(typeof open.sid, 'string');
  assert.deepEqual(open.upgrades, ['websocket']);
  assert.equal(open.pingInterval, 25_000);
  assert.equal(open.pingTimeout, 20_000);
  assert.equal(open.maxPayload, 1_000_000);

  // The preflight a browser sends before polling with an Authorization header.
  const preflight = await fetch(`${ctx.url}/socket.io/?EIO=4&transport=polling`, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' },
  });
  assert.ok(preflight.status === 200 || preflight.status === 204, `preflight status ${preflight.status}`);
  assert.equal(preflight.headers.get('access-control-allow-origin'), origin);
  assert.match(preflight.headers.get('access-control-allow-headers') || '', /authorization/i);
});
