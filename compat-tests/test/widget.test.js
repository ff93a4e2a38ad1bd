'use strict';
// The embeddable chat widget: socket.io-client 4.x with the deployed unsigned base64 token
// (accepted here because ALLOW_LEGACY_WIDGET_TOKENS=true) or a signed widget JWT. It listens
// for `message`, `message:new`, `message:typing` and `error`, sends `message:typing`,
// de-duplicates messages by `id`, and may touch its one conversation only.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, widgetToken, legacyWidgetToken, emitAck } = require('../helpers/harness');

const ctx = useServer({ ALLOW_LEGACY_WIDGET_TOKENS: 'true' });
const COMPANY = 'company-widget';
const agent = userToken('wid-agent-user', COMPANY);

/** The widget's own connection options: default transports, token in `auth`. */
function widgetOptions(token) {
  return { token, transports: ['polling', 'websocket'] };
}

test('the legacy unsigned widget token connects, joins its conversation and chats', async () => {
  const conv = await ctx.createConversation(agent);
  const dash = await ctx.joined(conv.id, { token: agent });
  const token = legacyWidgetToken(conv.id, COMPANY, { agentId: 'agent-1', apiKey: 'pk_test_123' });
  const w = await ctx.joined(conv.id, widgetOptions(token));
  const widgetUser = `widget:${conv.id}`;
  assert.deepEqual(await dash.rec.waitFor('user:joined'), { conversationId: conv.id, userId: widgetUser });

  // The widget types with `message:typing`; the dashboard sees it under every name.
  w.emit('message:typing', { conversationId: conv.id, isTyping: true });
  const typing = { conversationId: conv.id, userId: widgetUser, isTyping: true };
  assert.deepEqual(await dash.rec.waitFor('user:typing'), typing);
  assert.deepEqual(await dash.rec.waitFor('typing'), typing);
  assert.deepEqual(await dash.rec.waitFor('message:typing'), typing);
  await w.rec.expectNone('message:typing');

  // The agent types back; the widget listens for `message:typing`.
  dash.emit('typing', { conversationId: conv.id, isTyping: true });
  assert.deepEqual(await w.rec.waitFor('message:typing'), { conversationId: conv.id, userId: 'wid-agent-user', isTyping: true });

  // A visitor message: acknowledged, and received by both sides with `id`.
  const ack = await emitAck(w, 'message:send', { conversationId: conv.id, content: 'Hi, I need help', tempId: 17 });
  assert.equal(ack.ok, true);
  assert.equal(ack.message.sender_id, widgetUser);
  for (const s of [w, dash]) {
    const fresh = await s.rec.waitFor('message:new', (e) => e.message.id === ack.message.id);
    assert.equal(fresh.message._id, ack.message.id);
    const legacy = await s.rec.waitFor('message', (m) => m.id === ack.message.id);
    assert.equal(legacy.content, 'Hi, I need help');
  }

  // The agent's reply reaches the widget as both events, each carrying `id`.
  await emitAck(dash, 'message:send', { conversationId: conv.id, content: 'Hello! How can I help?' });
  const reply = await w.rec.waitFor('message:new', (e) => e.message.content === 'Hello! How can I help?');
  assert.match(reply.message.id, /^[0-9a-f]{24}$/);
  const replyLegacy = await w.rec.waitFor('message', (m) => m.content === 'Hello! How can I help?');
  assert.equal(replyLegacy.id, reply.message.id);
});

test('a signed widget JWT works the same way', async () => {
  const conv = await ctx.createConversation(agent);
  const dash = await ctx.joined(conv.id, { token: agent });
  const w = await ctx.joined(conv.id, widgetOptions(widgetToken(conv.id, COMPANY)));
  const ack = await emitAck(w, 'message:send', { conversationId: conv.id, content: 'signed widget here' });
  assert.equal(ack.ok, true);
  const fresh = await dash.rec.waitFor('message:new', (e) => e.message.id === ack.message.id);
  assert.equal(fresh.message.sender_id, `widget:${conv.id}`);
});

test('a widget is confined to its one conversation', async () => {
  const own = await ctx.createConversation(agent);
  const other = await ctx.createConversation(agent);
  const dashOther = await ctx.joined(other.id, { token: agent });
  const w = await ctx.joined(own.id, widgetOptions(legacyWidgetToken(own.id, COMPANY)));

  // Same company, another conversation: "not found", and the socket stays up.
  const join = await emitAck(w, 'conversation:join', other.id);
  assert.deepEqual({ ok: join.ok, error: join.error }, { ok: false, error: 'Conversation not found' });
  w.emit('conversation:join', other.id);
  assert.equal((await w.rec.waitFor('error')).message, 'Conversation not found');
  const send = await emitAck(w, 'message:send', { conversationId: other.id, content: 'sneaking in' });
  assert.deepEqual({ ok: send.ok, error: send.error }, { ok: false, error: 'Conversation not found' });
  const thread = await emitAck(w, 'thread:create', { conversationId: other.id, title: 'nope' });
  assert.equal(thread.ok, false);
  w.emit('message:typing', { conversationId: other.id, isTyping: true });
  assert.equal(typeof (await w.rec.waitFor('error')).message, 'string');

  // Nothing from the other conversation reaches the widget, and nothing leaks into it.
  await emitAck(dashOther, 'message:send', { conversationId: other.id, content: 'for the other room only' });
  await dashOther.rec.waitFor('message:new', (e) => e.message.content === 'for the other room only');
  await w.rec.expectNone('message:new', (e) => e.conversationId === other.id);
  await w.rec.expectNone('message', (m) => m.conversation_id === other.id);
  await dashOther.rec.expectNone('message:new', (e) => e.message.content === 'sneaking in');
  await dashOther.rec.expectNone('message:typing');

  // Over REST too.
  const rest = await ctx.api('GET', `/api/conversations/${other.id}`, { token: legacyWidgetToken(own.id, COMPANY) });
  assert.equal(rest.status, 404);
  assert.ok(w.connected);
});

test('internal emits and creates reach the widget with id', async () => {
  const conv = await ctx.createConversation(agent);
  const w = await ctx.joined(conv.id, widgetOptions(legacyWidgetToken(conv.id, COMPANY)));

  // A message another service built, carrying only `_id`: the widget still gets `id`.
  const emitted = await ctx.api('POST', '/api/internal/messages/emit', {
    internal: true,
    body: {
      conversationId: conv.id,
      message: { _id: '65f0c0ffee0000000000beef', content: 'Voice transcript line', sender_type: 'agent' },
    },
  });
  assert.equal(emitted.status, 200);
  assert.deepEqual(emitted.body, { success: true, messageId: '65f0c0ffee0000000000beef' });
  const fresh = await w.rec.waitFor('message:new', (e) => e.message.content === 'Voice transcript line');
  assert.equal(fresh.conversationId, conv.id);
  assert.equal(fresh.message.id, '65f0c0ffee0000000000beef');
  assert.equal(fresh.message._id, '65f0c0ffee0000000000beef');
  const legacy = await w.rec.waitFor('message', (m) => m.content === 'Voice transcript line');
  assert.equal(legacy.id, '65f0c0ffee0000000000beef');

  const created = await ctx.api('POST', '/api/internal/messages/create', {
    internal: true,
    body: { conversationId: conv.id, content: 'Spoken reply', senderType: 'agent' },
  });
  assert.equal(created.status, 200);
  assert.equal(created.body.success, true);
  const message = created.body.message;
  const createdEvent = await w.rec.waitFor('message:new', (e) => e.message.id === message.id);
  assert.equal(createdEvent.message._id, message.id);
  assert.equal(createdEvent.message.message_type, 'audio');
  assert.equal(createdEvent.message.sender_type, 'agent');
  assert.equal((await w.rec.waitFor('message', (m) => m.id === message.id)).content, 'Spoken reply');
});
