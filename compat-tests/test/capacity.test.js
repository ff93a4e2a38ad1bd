'use strict';
// MAX_CONNECTIONS: a connection over the cap is refused with a connect error; the server keeps
// serving the others, and a freed slot can be used again.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck } = require('../helpers/harness');

// The cap is per process, so this file runs on one node even in a multi-node run.
const ctx = useServer({ MAX_CONNECTIONS: 2 }, { nodes: 1 });
const COMPANY = 'company-capacity';

test('the connection over MAX_CONNECTIONS gets connect_error, and the server carries on', async () => {
  const token = userToken('capped', COMPANY);
  const conv = await ctx.createConversation(token);
  const first = await ctx.joined(conv.id, { token });
  const second = await ctx.joined(conv.id, { token: userToken('capped-2', COMPANY) });

  for (const transports of [['websocket'], ['polling']]) {
    const err = await ctx.connectError({ token, transports });
    assert.equal(err.message, 'Server is at capacity');
  }
  // Refused handshakes hold no slot: a wave of them changes nothing.
  await Promise.all(Array.from({ length: 10 }, () => ctx.connectError({ token })));

  // The connected ones are unaffected.
  const ack = await emitAck(first, 'message:send', { conversationId: conv.id, content: 'at capacity, still fine' });
  assert.equal(ack.ok, true);
  await second.rec.waitFor('message:new', (e) => e.message.id === ack.message.id);
  const health = await ctx.api('GET', '/health');
  assert.equal(health.status, 200);

  // Once a socket has gone (its user:left proves the server saw it), its slot is free again.
  second.disconnect();
  await first.rec.waitFor('user:left', (l) => l.userId === 'capped-2');
  const third = await ctx.connect({ token });
  assert.ok(third.connected);
  const err = await ctx.connectError({ token });
  assert.equal(err.message, 'Server is at capacity');
});
