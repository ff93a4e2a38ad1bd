'use strict';
// Back-end services (voice agent, workflows) call the internal API with the service token;
// what they create, emit or update reaches the sockets in the room like any other change.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck } = require('../helpers/harness');

const ctx = useServer();
const COMPANY = 'company-backend';
const agentUser = userToken('be-agent-user', COMPANY);

test('internal create persists and broadcasts message:new and message, with thread:updated in a thread', async () => {
  const conv = await ctx.createConversation(agentUser, { agent_id: 'voice-agent' });
  const s = await ctx.joined(conv.id, { token: agentUser });

  const created = await ctx.api('POST', '/api/internal/messages/create', {
    internal: true,
    body: { conversationId: conv.id, content: 'Transcribed: hello', senderType: 'user', metadata: { call_id: 'call-1' } },
  });
  assert.equal(created.status, 200);
  const message = created.body.message;
  assert.equal(message.message_type, 'audio');
  assert.equal(message.metadata.call_id, 'call-1');
  const fresh = await s.rec.waitFor('message:new', (e) => e.message.id === message.id);
  assert.deepEqual(fresh, { conversationId: conv.id, message });
  assert.deepEqual(await s.rec.waitFor('message', (m) => m.id === message.id), message);

  // It is stored: the REST history has it.
  const history = await ctx.api('GET', `/api/conversations/${conv.id}/messages`, { token: agentUser });
  assert.ok(history.body.messages.some((m) => m.id === message.id));

  // Into a thread, typed: the room also hears the thread's new count.
  const thread = (await emitAck(s, 'thread:create', { conversationId: conv.id, title: 'Call notes' })).thread;
  const inThread = await ctx.api('POST', '/api/internal/messages/create', {
    internal: true,
    body: { conversationId: conv.id, content: 'Agent reply', senderType: 'agent', messageType: 'text', threadId: thread.id },
  });
  assert.equal(inThread.status, 200);
  assert.equal(inThread.body.message.sender_id, 'voice-agent');
  const threaded = await s.rec.waitFor('message:new', (e) => e.message.id === inThread.body.message.id);
  assert.equal(threaded.message.thread_id, thread.id);
  assert.deepEqual(await s.rec.waitFor('thread:updated'), { conversationId: conv.id, threadId: thread.id, message_count: 1 });
});

test('internal emit broadcasts a message it did not store, always with _id and id', async () => {
  const conv = await ctx.createConversation(agentUser);
  const s = await ctx.joined(conv.id, { token: agentUser });

  const noId = await ctx.api('POST', '/api/internal/messages/emit', {
    internal: true,
    body: { conversationId: conv.id, message: { content: 'partial transcript', sender_type: 'agent', role: 'assistant' } },
  });
  assert.equal(noId.status, 200);
  assert.equal(noId.body.success, true);
  const generated = noId.body.messageId;
  assert.match(generated, /^[0-9a-f]{24}$/);
  const fresh = await s.rec.waitFor('message:new', (e) => e.message.id === generated);
  assert.equal(fresh.conversationId, conv.id);
  assert.equal(fresh.message._id, generated);
  assert.equal(fresh.message.conversation_id, conv.id);
  assert.equal(fresh.message.content, 'partial transcript');
  assert.equal((await s.rec.waitFor('message', (m) => m.id === generated)).role, 'assistant');

  const withId = await ctx.api('POST', '/api/internal/messages/emit', {
    internal: true,
    body: { conversationId: conv.id, message: { id: '65f0000000000000000000aa', content: 'with an id' } },
  });
  assert.equal(withId.body.messageId, '65f0000000000000000000aa');
  const second = await s.rec.waitFor('message:new', (e) => e.message.content === 'with an id');
  assert.equal(second.message._id, '65f0000000000000000000aa');
  assert.equal(second.message.id, '65f0000000000000000000aa');
});

test('internal conversation updates reach the room as conversation:updated', async () => {
  const conv = await ctx.createConversation(agentUser, { metadata: { source: 'phone' } });
  const s = await ctx.joined(conv.id, { token: agentUser });

  const res = await ctx.api('PATCH', `/api/internal/conversations/${conv.id}`, {
    internal: true,
    body: { status: 'completed', metadata: { duration_s: 42 } },
  });
  assert.deepEqual({ status: res.status, body: res.body }, { status: 200, body: { success: true } });
  const event = await s.rec.waitFor('conversation:updated');
  assert.equal(event.conversationId, conv.id);
  assert.equal(event.conversation.status, 'completed');
  // Internal updates merge metadata.
  assert.deepEqual(event.conversation.metadata, { source: 'phone', duration_s: 42 });

  const viaUpdate = await ctx.api('POST', `/api/internal/conversations/${conv.id}/update`, {
    internal: true,
    body: { status: 'archived' },
  });
  assert.equal(viaUpdate.status, 200);
  assert.equal((await s.rec.waitFor('conversation:updated')).conversation.status, 'archived');
});

test('the internal API refuses callers without the service token and broadcasts nothing', async () => {
  const conv = await ctx.createConversation(agentUser);
  const s = await ctx.joined(conv.id, { token: agentUser });
  const body = { conversationId: conv.id, content: 'forged', senderType: 'agent' };
  for (const token of [undefined, agentUser, 'wrong-service-token']) {
    const res = await ctx.api('POST', '/api/internal/messages/create', { token, body });
    assert.equal(res.status, 401);
  }
  await s.rec.expectNone('message:new');
  await s.rec.expectNone('message');
});
