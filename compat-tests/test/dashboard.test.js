'use strict';
// The deployed dashboard: socket.io-client 4.8 with `transports: ['websocket', 'polling']` and
// `auth: { token }`. It joins conversations, sends messages, shows typing, works with threads,
// and sees REST changes (edits, deletes, conversation and participant updates) live.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck, MISSING_ID } = require('../helpers/harness');

const ctx = useServer();
const COMPANY = 'company-dashboard';
const alice = userToken('dash-alice', COMPANY);
const bob = userToken('dash-bob', COMPANY);
const carol = userToken('dash-carol', COMPANY);

const OBJECT_ID = /^[0-9a-f]{24}$/;
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function assertMessageIds(message) {
  assert.match(message._id, OBJECT_ID);
  assert.equal(message.id, message._id, 'id and _id must be the same value');
}

test('conversation:join answers conversation:joined and tells the others user:joined', async () => {
  const conv = await ctx.createConversation(alice, { title: 'Join flow' });
  const b = await ctx.connect({ token: bob });
  const ack = await emitAck(b, 'conversation:join', conv.id);
  assert.equal(ack.ok, true);
  const joined = await b.rec.waitFor('conversation:joined');
  assert.deepEqual(Object.keys(joined).sort(), ['agentId', 'channel', 'id', 'startedAt', 'status']);
  assert.equal(joined.id, conv.id);
  assert.equal(joined.agentId, 'agent-1');
  assert.equal(joined.channel, 'chat');
  assert.equal(joined.status, 'active');
  assert.match(joined.startedAt, ISO_MS);

  // The dashboard's own form, without an acknowledgement, and the `{ conversationId }` form.
  const a = await ctx.connect({ token: alice });
  a.emit('conversation:join', { conversationId: conv.id });
  await a.rec.waitFor('conversation:joined', (j) => j.id === conv.id);
  const seen = await b.rec.waitFor('user:joined');
  assert.deepEqual(seen, { conversationId: conv.id, userId: 'dash-alice' });
  await a.rec.expectNone('user:joined');
});

test('message:send is acknowledged and broadcast as message:new and message with _id and id', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const b = await ctx.joined(conv.id, { token: bob });

  const ack = await emitAck(a, 'message:send', {
    conversationId: conv.id,
    content: '  hello <script>alert(1)</script><b>bob</b>  ',
    tempId: 'temp-1',
  });
  assert.equal(ack.ok, true);
  const sent = ack.message;
  assertMessageIds(sent);
  assert.equal(sent.conversation_id, conv.id);
  assert.equal(sent.sender_id, 'dash-alice');
  assert.equal(sent.sender_type, 'user');
  assert.equal(sent.role, 'user');
  assert.equal(sent.message_type, 'text');
  assert.ok(sent.thread_id === null || sent.thread_id === undefined);
  assert.ok(sent.content.startsWith('hello'));
  assert.ok(sent.content.includes('bob'));
  assert.ok(!sent.content.includes('<script'), `content was not sanitized: ${sent.content}`);
  assert.match(sent.created_at, ISO_MS);

  for (const s of [a, b]) {
    const fresh = await s.rec.waitFor('message:new', (e) => e.message.id === sent.id);
    assert.equal(fresh.conversationId, conv.id);
    assertMessageIds(fresh.message);
    assert.deepEqual(fresh.message, sent);
    const legacy = await s.rec.waitFor('message', (m) => m.id === sent.id);
    assertMessageIds(legacy);
    assert.deepEqual(legacy, sent);
  }

  // Without a callback (fire and forget) and with attachments sent as a JSON string.
  const attachments = JSON.stringify([
    { url: 'https://files.example.test/a.png', type: 'image', name: 'a.png', size: 10 },
    { url: 'javascript:alert(1)', type: 'image', name: 'bad' },
  ]);
  b.emit('message:send', { conversationId: conv.id, content: 'with files', messageType: 'image', attachments });
  const withFiles = await a.rec.waitFor('message:new', (e) => e.message.content === 'with files');
  assert.equal(withFiles.message.message_type, 'image');
  assert.deepEqual(withFiles.message.attachments, [
    { url: 'https://files.example.test/a.png', type: 'image', name: 'a.png', size: 10 },
  ]);
  assertMessageIds(withFiles.message);
  await a.rec.waitFor('message', (m) => m.content === 'with files');
});

test('typing goes to the others in the room only, as user:typing, typing and message:typing', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const b = await ctx.joined(conv.id, { token: bob });

  b.emit('typing', { conversationId: conv.id, isTyping: true });
  const expected = { conversationId: conv.id, userId: 'dash-bob', isTyping: true };
  assert.deepEqual(await a.rec.waitFor('user:typing'), expected);
  assert.deepEqual(await a.rec.waitFor('typing'), expected);
  assert.deepEqual(await a.rec.waitFor('message:typing'), expected);

  // The other way, stopping, with an acknowledgement.
  const ack = await emitAck(a, 'typing', { conversationId: conv.id, isTyping: false });
  assert.equal(ack.ok, true);
  const back = { conversationId: conv.id, userId: 'dash-alice', isTyping: false };
  assert.deepEqual(await b.rec.waitFor('user:typing'), back);
  assert.deepEqual(await b.rec.waitFor('typing'), back);

  // Nobody hears their own typing.
  await a.rec.expectNone('user:typing');
  await b.rec.expectNone('user:typing', (t) => t.userId === 'dash-bob');
  await b.rec.expectNone('typing', (t) => t.userId === 'dash-bob');
});

test('typing from a socket that has not joined the room is not relayed', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const c = await ctx.connect({ token: carol });

  const ack = await emitAck(c, 'typing', { conversationId: conv.id, isTyping: true });
  assert.equal(ack.ok, false);
  assert.equal(typeof ack.error, 'string');
  c.emit('typing', { conversationId: conv.id, isTyping: true });
  const err = await c.rec.waitFor('error');
  assert.equal(typeof err.message, 'string');
  await a.rec.expectNone('user:typing');
  await a.rec.expectNone('typing');
  assert.ok(c.connected);
});

test('threads: thread:create, thread:switch and thread:updated with message_count', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const b = await ctx.joined(conv.id, { token: bob });

  const created = await emitAck(a, 'thread:create', { conversationId: conv.id, title: 'Billing <img src=x onerror=alert(1)>' });
  assert.equal(created.ok, true);
  const thread = created.thread;
  assert.match(thread.id, /^[0-9a-f-]{36}$/);
  assert.ok(thread.title.startsWith('Billing'));
  assert.ok(!thread.title.includes('onerror'));
  assert.equal(thread.message_count, 0);
  for (const s of [a, b]) {
    const event = await s.rec.waitFor('thread:created');
    assert.equal(event.conversationId, conv.id);
    assert.deepEqual(event.thread, thread);
  }

  // thread:switch answers the caller only.
  const switched = await emitAck(b, 'thread:switch', { conversationId: conv.id, threadId: thread.id });
  assert.equal(switched.ok, true);
  assert.deepEqual(await b.rec.waitFor('thread:switched'), { conversationId: conv.id, threadId: thread.id });
  await a.rec.expectNone('thread:switched');

  // A message in the thread updates its count for the whole room.
  const sent = await emitAck(b, 'message:send', { conversationId: conv.id, content: 'in the thread', threadId: thread.id });
  assert.equal(sent.ok, true);
  assert.equal(sent.message.thread_id, thread.id);
  for (const s of [a, b]) {
    const fresh = await s.rec.waitFor('message:new', (e) => e.message.id === sent.message.id);
    assert.equal(fresh.message.thread_id, thread.id);
    assert.deepEqual(await s.rec.waitFor('thread:updated'), {
      conversationId: conv.id,
      threadId: thread.id,
      message_count: 1,
    });
  }

  // The REST thread routes broadcast the same events.
  const restThread = await ctx.api('POST', `/api/conversations/${conv.id}/threads`, { token: alice, body: { title: 'Shipping' } });
  assert.equal(restThread.status, 201);
  const restCreated = await b.rec.waitFor('thread:created');
  assert.equal(restCreated.thread.id, restThread.body.thread.id);
  const restPost = await ctx.api('POST', `/api/conversations/${conv.id}/threads/${thread.id}`, {
    token: alice,
    body: { content: 'second in thread' },
  });
  assert.equal(restPost.status, 201);
  assert.deepEqual(await a.rec.waitFor('thread:updated'), { conversationId: conv.id, threadId: thread.id, message_count: 2 });

  // Back to the main thread, and an unknown thread.
  b.emit('thread:switch', { conversationId: conv.id, threadId: null });
  assert.deepEqual(await b.rec.waitFor('thread:switched'), { conversationId: conv.id, threadId: null });
  b.emit('thread:switch', { conversationId: conv.id, threadId: '00000000-0000-4000-8000-000000000000' });
  const notFound = await b.rec.waitFor('error');
  assert.equal(notFound.message, 'Thread not found');
  const nack = await emitAck(b, 'thread:switch', { conversationId: conv.id, threadId: '00000000-0000-4000-8000-000000000000' });
  assert.deepEqual({ ok: nack.ok, error: nack.error }, { ok: false, error: 'Thread not found' });
  await b.rec.expectNone('thread:switched');
  assert.ok(b.connected);
});

test('REST messages, edits, reactions and deletes are seen live', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const b = await ctx.joined(conv.id, { token: bob });

  // A message posted over REST reaches sockets exactly like one sent over a socket.
  const posted = await ctx.api('POST', `/api/conversations/${conv.id}/messages`, { token: alice, body: { content: 'over rest' } });
  assert.equal(posted.status, 201);
  const message = posted.body.message;
  const fresh = await b.rec.waitFor('message:new', (e) => e.message.id === message.id);
  assert.deepEqual(fresh, { conversationId: conv.id, message });
  assert.deepEqual(await b.rec.waitFor('message', (m) => m.id === message.id), message);

  const edited = await ctx.api('PATCH', `/api/conversations/${conv.id}/messages/${message.id}`, {
    token: alice,
    body: { content: 'over rest, edited' },
  });
  assert.equal(edited.status, 200);
  for (const s of [a, b]) {
    const event = await s.rec.waitFor('message:edited');
    assert.equal(event.conversationId, conv.id);
    assert.equal(event.messageId, message.id);
    assertMessageIds(event.message);
    assert.equal(event.message.content, 'over rest, edited');
    assert.match(event.message.metadata.edited_at, ISO_MS);
  }

  // Bob reacts: another message:edited carrying the reaction.
  const reacted = await ctx.api('PATCH', `/api/conversations/${conv.id}/messages/${message.id}`, {
    token: bob,
    body: { reaction: '👍' },
  });
  assert.equal(reacted.status, 200);
  const withReaction = await a.rec.waitFor('message:edited', (e) => (e.message.metadata.reactions || []).length > 0);
  assert.equal(withReaction.message.metadata.reactions[0].emoji, '👍');
  assert.equal(withReaction.message.metadata.reactions[0].user_id, 'dash-bob');

  const deleted = await ctx.api('DELETE', `/api/conversations/${conv.id}/messages/${message.id}`, { token: alice });
  assert.equal(deleted.status, 200);
  for (const s of [a, b]) {
    assert.deepEqual(await s.rec.waitFor('message:deleted'), {
      conversationId: conv.id,
      messageId: message.id,
      threadId: null,
    });
  }
});

test('conversation updates over REST reach the room as conversation:updated', async () => {
  const conv = await ctx.createConversation(alice);
  const b = await ctx.joined(conv.id, { token: bob });

  const put = await ctx.api('PUT', `/api/conversations/${conv.id}`, { token: alice, body: { status: 'ended', tags: ['vip'] } });
  assert.equal(put.status, 200);
  const first = await b.rec.waitFor('conversation:updated');
  assert.equal(first.conversationId, conv.id);
  assert.equal(first.conversation.id, conv.id);
  assert.equal(first.conversation._id, conv.id);
  assert.equal(first.conversation.status, 'ended');
  assert.deepEqual(first.conversation.tags, ['vip']);

  const patch = await ctx.api('PATCH', `/api/conversations/${conv.id}`, { token: alice, body: { title: 'Renamed' } });
  assert.equal(patch.status, 200);
  const second = await b.rec.waitFor('conversation:updated');
  assert.equal(second.conversation.title, 'Renamed');
  assert.equal(second.conversation.status, 'ended');
});

test('participant:added and participant:removed reach the room', async () => {
  const conv = await ctx.createConversation(alice);
  const b = await ctx.joined(conv.id, { token: bob });

  const added = await ctx.api('POST', `/api/conversations/${conv.id}/participants`, { token: alice, body: { userId: 'dave' } });
  assert.equal(added.status, 200);
  assert.ok(added.body.conversation.participants.includes('dave'));
  assert.deepEqual(await b.rec.waitFor('participant:added'), { conversationId: conv.id, userId: 'dave' });

  const removed = await ctx.api('DELETE', `/api/conversations/${conv.id}/participants/dave`, { token: alice });
  assert.equal(removed.status, 200);
  assert.ok(!removed.body.conversation.participants.includes('dave'));
  assert.deepEqual(await b.rec.waitFor('participant:removed'), { conversationId: conv.id, userId: 'dave' });

  // A participant id is echoed to every dashboard in the room: markup is refused, never relayed.
  for (const userId of ['<b>dave</b>', '<img src=x onerror=alert(1)>', 'a&b']) {
    const refused = await ctx.api('POST', `/api/conversations/${conv.id}/participants`, { token: alice, body: { userId } });
    assert.equal(refused.status, 400, userId);
  }
  await b.rec.expectNone('participant:added');
});

test('conversation:leave and disconnecting tell the others user:left', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  const b = await ctx.joined(conv.id, { token: bob });

  const ack = await emitAck(b, 'conversation:leave', conv.id);
  assert.equal(ack.ok, true);
  assert.deepEqual(await a.rec.waitFor('user:left'), { conversationId: conv.id, userId: 'dash-bob' });

  // Out of the room, bob hears nothing more from it.
  await emitAck(a, 'message:send', { conversationId: conv.id, content: 'after bob left' });
  await b.rec.expectNone('message:new');
  await b.rec.expectNone('message');

  // Back in, then gone: a disconnect is a leave too.
  await emitAck(b, 'conversation:join', conv.id);
  await a.rec.waitFor('user:joined', (j) => j.userId === 'dash-bob');
  b.disconnect();
  assert.deepEqual(await a.rec.waitFor('user:left'), { conversationId: conv.id, userId: 'dash-bob' });
});

test('joining a conversation that does not exist answers error and keeps the socket', async () => {
  const c = await ctx.connect({ token: carol });
  c.emit('conversation:join', MISSING_ID);
  assert.equal((await c.rec.waitFor('error')).message, 'Conversation not found');
  const nack = await emitAck(c, 'conversation:join', MISSING_ID);
  assert.deepEqual({ ok: nack.ok, error: nack.error }, { ok: false, error: 'Conversation not found' });
  await c.rec.expectNone('conversation:joined');
  assert.ok(c.connected);

  const conv = await ctx.createConversation(carol);
  const ok = await emitAck(c, 'conversation:join', conv.id);
  assert.equal(ok.ok, true);
  await c.rec.waitFor('conversation:joined', (j) => j.id === conv.id);
});

test('an event emitted from the connect callback is always handled', async () => {
  // The dashboard joins its conversation the moment `connect` fires, and a user's first
  // socket is when the server has presence work to do: any gap between the server's CONNECT
  // packet and its event handlers would drop these joins.
  const users = Array.from({ length: 10 }, (_, i) => `eager-${i}`);
  const conv = await ctx.createConversation(alice, { participants: users });
  for (const user of users) {
    const s = ctx.socket({ token: userToken(user, COMPANY) });
    const ack = await new Promise((resolve, reject) => {
      s.once('connect_error', reject);
      s.once('connect', () => {
        emitAck(s, 'conversation:join', conv.id).then(resolve, reject);
      });
    });
    assert.equal(ack.ok, true, user);
    await s.rec.waitFor('conversation:joined');
  }
});
