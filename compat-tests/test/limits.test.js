'use strict';
// Per-user limits on socket events: over the limit an event is refused with an `error` (or a
// negative acknowledgement) and the connection stays up. Small limits make this quick.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck } = require('../helpers/harness');

const MESSAGE_LIMIT = 3;
const TYPING_LIMIT = 4;
const ctx = useServer({
  SOCKET_MESSAGE_LIMIT: MESSAGE_LIMIT,
  SOCKET_TYPING_LIMIT: TYPING_LIMIT,
  SOCKET_LIMIT_WINDOW_MS: 600_000,
});
const COMPANY = 'company-limits';

test('message:send over the per-user limit is refused and the connection stays up', async () => {
  const spammer = userToken('spammer', COMPANY);
  const conv = await ctx.createConversation(spammer);
  const s = await ctx.joined(conv.id, { token: spammer });
  const other = await ctx.joined(conv.id, { token: userToken('neighbour', COMPANY) });

  for (let i = 0; i < MESSAGE_LIMIT; i++) {
    const ack = await emitAck(s, 'message:send', { conversationId: conv.id, content: `burst ${i}` });
    assert.equal(ack.ok, true, `send ${i}`);
  }
  const refused = await emitAck(s, 'message:send', { conversationId: conv.id, content: 'one too many' });
  assert.deepEqual({ ok: refused.ok, error: refused.error }, { ok: false, error: 'Too many requests' });
  s.emit('message:send', { conversationId: conv.id, content: 'and another', tempId: 'spam-1' });
  assert.equal((await s.rec.waitFor('error')).message, 'Too many requests');
  assert.deepEqual(await s.rec.waitFor('message:error'), { messageId: 'spam-1', error: 'Too many requests' });
  await other.rec.expectNone('message:new', (e) => ['one too many', 'and another'].includes(e.message.content));

  // The limit is per user: a second tab of the same user is limited too, others are not.
  const tab2 = await ctx.connect({ token: spammer });
  const fromTab2 = await emitAck(tab2, 'message:send', { conversationId: conv.id, content: 'from the other tab' });
  assert.equal(fromTab2.ok, false);
  const neighbour = await emitAck(other, 'message:send', { conversationId: conv.id, content: 'I can still talk' });
  assert.equal(neighbour.ok, true);

  // Still connected and still served: other events work.
  assert.ok(s.connected);
  await s.rec.waitFor('message:new', (e) => e.message.content === 'I can still talk');
  const leave = await emitAck(s, 'conversation:leave', conv.id);
  assert.equal(leave.ok, true);
});

test('typing over the per-user limit is refused and the connection stays up', async () => {
  const typist = userToken('typist', COMPANY);
  const conv = await ctx.createConversation(typist);
  const s = await ctx.joined(conv.id, { token: typist });
  const other = await ctx.joined(conv.id, { token: userToken('reader', COMPANY) });

  for (let i = 0; i < TYPING_LIMIT; i++) {
    const ack = await emitAck(s, 'typing', { conversationId: conv.id, isTyping: i % 2 === 0 });
    assert.equal(ack.ok, true, `typing ${i}`);
    await other.rec.waitFor('user:typing');
  }
  s.emit('typing', { conversationId: conv.id, isTyping: true });
  assert.equal((await s.rec.waitFor('error')).message, 'Too many requests');
  await other.rec.expectNone('user:typing');
  assert.ok(s.connected);
  const ack = await emitAck(s, 'message:send', { conversationId: conv.id, content: 'typing limit is not a send limit' });
  assert.equal(ack.ok, true);
});
