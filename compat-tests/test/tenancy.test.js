'use strict';
// Tenant isolation: a socket of company B cannot join, write to or listen in on a
// conversation of company A. Another tenant's conversation is "not found", never "forbidden".

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, widgetToken, emitAck } = require('../helpers/harness');

const ctx = useServer();
const alice = userToken('ten-alice', 'company-a');
const mallory = userToken('mallory', 'company-b');

test('a company-B socket cannot join company A\'s conversation and hears nothing from it', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const m = await ctx.connect({ token: mallory });

  const join = await emitAck(m, 'conversation:join', conv.id);
  assert.deepEqual({ ok: join.ok, error: join.error }, { ok: false, error: 'Conversation not found' });
  m.emit('conversation:join', { conversationId: conv.id });
  assert.deepEqual(await m.rec.waitFor('error'), { message: 'Conversation not found' });
  await m.rec.expectNone('conversation:joined');
  await a.rec.expectNone('user:joined', (j) => j.userId === 'mallory');

  // Writes are refused the same way.
  const send = await emitAck(m, 'message:send', { conversationId: conv.id, content: 'cross-tenant', tempId: 'x1' });
  assert.deepEqual({ ok: send.ok, error: send.error }, { ok: false, error: 'Conversation not found' });
  assert.deepEqual(await m.rec.waitFor('message:error'), { messageId: 'x1', error: 'Conversation not found' });
  const thread = await emitAck(m, 'thread:create', { conversationId: conv.id, title: 'cross-tenant' });
  assert.deepEqual({ ok: thread.ok, error: thread.error }, { ok: false, error: 'Conversation not found' });
  const sw = await emitAck(m, 'thread:switch', { conversationId: conv.id, threadId: null });
  assert.deepEqual({ ok: sw.ok, error: sw.error }, { ok: false, error: 'Conversation not found' });
  const typing = await emitAck(m, 'typing', { conversationId: conv.id, isTyping: true });
  assert.equal(typing.ok, false);

  // Everything that happens in A's room stays there.
  await emitAck(a, 'message:send', { conversationId: conv.id, content: 'company A only' });
  a.emit('typing', { conversationId: conv.id, isTyping: true });
  await emitAck(a, 'thread:create', { conversationId: conv.id, title: 'A thread' });
  await ctx.api('PATCH', `/api/conversations/${conv.id}`, { token: alice, body: { status: 'archived' } });
  await ctx.api('POST', `/api/conversations/${conv.id}/participants`, { token: alice, body: { userId: 'mallory' } });
  await a.rec.waitFor('participant:added');
  await m.rec.expectNone('message');
  for (const event of ['message:new', 'user:typing', 'typing', 'thread:created', 'conversation:updated', 'participant:added']) {
    assert.ok(!m.rec.names().includes(event), `company B received ${event}`);
  }
  await a.rec.expectNone('message:new', (e) => e.message.content === 'cross-tenant');
  await a.rec.expectNone('thread:created', (e) => e.thread.title === 'cross-tenant');
  assert.ok(m.connected);
});

test('even as a named participant, another tenant still cannot join', async () => {
  const conv = await ctx.createConversation(alice, { participants: ['mallory'] });
  const m = await ctx.connect({ token: mallory });
  const join = await emitAck(m, 'conversation:join', conv.id);
  assert.equal(join.ok, false);
  assert.equal(join.error, 'Conversation not found');
});

test('a widget token of company B naming company A\'s conversation finds nothing', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const w = await ctx.connect({ token: widgetToken(conv.id, 'company-b') });
  const join = await emitAck(w, 'conversation:join', conv.id);
  assert.deepEqual({ ok: join.ok, error: join.error }, { ok: false, error: 'Conversation not found' });
  await emitAck(a, 'message:send', { conversationId: conv.id, content: 'private to A' });
  await w.rec.expectNone('message:new');
  await w.rec.expectNone('message');
});

test('operator objects as ids are refused, never matched', async () => {
  await ctx.createConversation(alice);
  const m = await ctx.connect({ token: mallory });
  for (const id of [{ $gt: '' }, { $ne: null }, ['x'], 42]) {
    const join = await emitAck(m, 'conversation:join', id);
    assert.equal(join.ok, false, `join ${JSON.stringify(id)}`);
    const joinObj = await emitAck(m, 'conversation:join', { conversationId: id });
    assert.equal(joinObj.ok, false);
    const send = await emitAck(m, 'message:send', { conversationId: id, content: 'hi' });
    assert.equal(send.ok, false);
    assert.equal(send.error, 'Invalid message data');
  }
  await m.rec.expectNone('conversation:joined');
  assert.ok(m.connected);
});
