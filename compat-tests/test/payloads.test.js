'use strict';
// Bad payloads: each is refused to the sending socket only (an `error` event, or the
// acknowledgement when the client passed a callback, plus `message:error` for a `tempId`),
// and the socket stays connected and can still send.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck } = require('../helpers/harness');

const ctx = useServer();
const COMPANY = 'company-payloads';
const alice = userToken('pay-alice', COMPANY);
const bob = userToken('pay-bob', COMPANY);

/** Every way the deployed clients (or an attacker) get `message:send` wrong. */
function badPayloads(conversationId) {
  return {
    'a string': 'hello',
    'a number': 42,
    'an array': [conversationId, 'hello'],
    null: null,
    'missing content': { conversationId },
    'empty content': { conversationId, content: '   ' },
    'content not a string': { conversationId, content: { text: 'hi' } },
    '20 000 characters': { conversationId, content: 'x'.repeat(20_000) },
    'operator object as conversationId': { conversationId: { $gt: '' }, content: 'hi' },
    'conversationId not an id': { conversationId: 'not-an-object-id', content: 'hi' },
    'missing conversationId': { content: 'hi' },
    'invalid messageType': { conversationId, content: 'hi', messageType: 'gif' },
    'reserved messageType': { conversationId, content: 'hi', messageType: 'system' },
    'operator object as threadId': { conversationId, content: 'hi', threadId: { $ne: null } },
  };
}

function assertRefusal(event) {
  assert.equal(event.message, 'Invalid message data');
  assert.ok(Array.isArray(event.details) && event.details.length > 0, `details: ${JSON.stringify(event.details)}`);
  for (const d of event.details) {
    assert.equal(typeof d.field, 'string');
    assert.equal(typeof d.message, 'string');
  }
}

test('without a callback: error {message: "Invalid message data", details}', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const b = await ctx.joined(conv.id, { token: bob });
  for (const [name, payload] of Object.entries(badPayloads(conv.id))) {
    a.emit('message:send', payload);
    const err = await a.rec.waitFor('error');
    assert.doesNotThrow(() => assertRefusal(err), name);
  }
  // Not even an argument at all.
  a.emit('message:send');
  assertRefusal(await a.rec.waitFor('error'));

  // Nothing reached the room, nothing reached the other socket, and the sender is fine.
  await b.rec.expectNone('message:new');
  await b.rec.expectNone('error');
  assert.ok(a.connected);
  const ok = await emitAck(a, 'message:send', { conversationId: conv.id, content: 'still connected' });
  assert.equal(ok.ok, true);
  await b.rec.waitFor('message:new', (e) => e.message.id === ok.message.id);
});

test('with a callback: the acknowledgement says {ok: false, error}', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  for (const [name, payload] of Object.entries(badPayloads(conv.id))) {
    const ack = await emitAck(a, 'message:send', payload);
    assert.equal(ack.ok, false, name);
    assert.equal(ack.error, 'Invalid message data', name);
    assert.ok(ack.details, name);
  }
  // The refusal went to the callback, not to the `error` event as well.
  await a.rec.expectNone('error');
  const ok = await emitAck(a, 'message:send', { conversationId: conv.id, content: 'after the bad ones' });
  assert.equal(ok.ok, true);
});

test('with a tempId: message:error {messageId: tempId, error} as well', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });

  a.emit('message:send', { conversationId: conv.id, content: '', tempId: 'bubble-1' });
  assert.deepEqual(await a.rec.waitFor('message:error'), { messageId: 'bubble-1', error: 'Invalid message data' });
  assertRefusal(await a.rec.waitFor('error'));

  const ack = await emitAck(a, 'message:send', { conversationId: conv.id, content: 'x'.repeat(20_000), tempId: 'bubble-2' });
  assert.equal(ack.ok, false);
  assert.deepEqual(await a.rec.waitFor('message:error'), { messageId: 'bubble-2', error: 'Invalid message data' });

  // A numeric temp id (Date.now() in the widget) comes back as a string.
  a.emit('message:send', { conversationId: conv.id, messageType: 'gif', content: 'x', tempId: 1700000000000 });
  assert.deepEqual(await a.rec.waitFor('message:error'), { messageId: '1700000000000', error: 'Invalid message data' });
  assertRefusal(await a.rec.waitFor('error'));

  // An unknown thread is not a payload error but still fails the bubble.
  a.emit('message:send', { conversationId: conv.id, content: 'x', threadId: '00000000-0000-4000-8000-000000000000', tempId: 'bubble-3' });
  assert.deepEqual(await a.rec.waitFor('message:error'), { messageId: 'bubble-3', error: 'Thread not found' });
  assert.equal((await a.rec.waitFor('error')).message, 'Thread not found');
});

test('bad payloads on the other events are answered, never fatal', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const b = await ctx.joined(conv.id, { token: bob });
  const cases = [
    ['conversation:join', { conversationId: { $gt: '' } }],
    ['conversation:join', null],
    ['conversation:leave', { conversationId: 7 }],
    ['typing', 'nope'],
    ['typing', { conversationId: conv.id, isTyping: 'yes' }],
    ['thread:create', { conversationId: conv.id }],
    ['thread:create', { conversationId: conv.id, title: '   ' }],
    ['thread:create', { conversationId: conv.id, title: 'x'.repeat(5_000) }],
    ['thread:switch', { conversationId: conv.id, threadId: { $ne: null } }],
    ['thread:switch', 12],
  ];
  for (const [event, payload] of cases) {
    const ack = await emitAck(a, event, payload);
    assert.equal(ack.ok, false, `${event} ${JSON.stringify(payload)}`);
    assert.equal(typeof ack.error, 'string');
    a.emit(event, payload);
    const err = await a.rec.waitFor('error');
    assert.equal(typeof err.message, 'string', `${event} ${JSON.stringify(payload)}`);
  }
  await b.rec.expectNone('user:typing');
  await b.rec.expectNone('thread:created');
  await b.rec.expectNone('error');
  assert.ok(a.connected);
  const ok = await emitAck(a, 'message:send', { conversationId: conv.id, content: 'survived' });
  assert.equal(ok.ok, true);
});

test('unknown events are ignored and markup is cleaned, not refused', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  a.emit('no:such:event', { anything: true });
  const ack = await emitAck(a, 'message:send', {
    conversationId: conv.id,
    content: '<img src=x onerror="alert(1)">look <a href="javascript:alert(1)">here</a>',
  });
  assert.equal(ack.ok, true);
  assert.ok(!ack.message.content.includes('onerror'));
  assert.ok(!ack.message.content.includes('javascript:'));
  assert.ok(ack.message.content.includes('look'));
  assert.ok(ack.message.content.includes('here'));
});
