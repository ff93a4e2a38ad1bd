'use strict';
// LEGACY_EVENTS=false: only the documented event names are emitted; the aliases `message`,
// `typing` and `message:typing` are off. Everything else is unchanged.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck } = require('../helpers/harness');

const ctx = useServer({ LEGACY_EVENTS: 'false' });
const COMPANY = 'company-modern';
const alice = userToken('modern-alice', COMPANY);
const bob = userToken('modern-bob', COMPANY);

test('messages arrive as message:new only', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const b = await ctx.joined(conv.id, { token: bob });

  const ack = await emitAck(a, 'message:send', { conversationId: conv.id, content: 'documented names only' });
  assert.equal(ack.ok, true);
  const fresh = await b.rec.waitFor('message:new', (e) => e.message.id === ack.message.id);
  assert.equal(fresh.message._id, fresh.message.id);

  await ctx.api('POST', '/api/internal/messages/emit', {
    internal: true,
    body: { conversationId: conv.id, message: { content: 'emitted', sender_type: 'system' } },
  });
  const emitted = await b.rec.waitFor('message:new', (e) => e.message.content === 'emitted');
  assert.match(emitted.message.id, /^[0-9a-f]{24}$/);
  assert.equal(emitted.message._id, emitted.message.id);

  await b.rec.expectNone('message');
  await a.rec.expectNone('message');
});

test('typing arrives as user:typing only', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const b = await ctx.joined(conv.id, { token: bob });

  const ack = await emitAck(a, 'typing', { conversationId: conv.id, isTyping: true });
  assert.equal(ack.ok, true);
  assert.deepEqual(await b.rec.waitFor('user:typing'), { conversationId: conv.id, userId: 'modern-alice', isTyping: true });
  await b.rec.expectNone('typing');
  await b.rec.expectNone('message:typing');
  assert.ok(!b.rec.names().includes('message'));

  // The widget's `message:typing` is an alias too: not served with the aliases off.
  a.emit('message:typing', { conversationId: conv.id, isTyping: false });
  await b.rec.expectNone('user:typing');
});
