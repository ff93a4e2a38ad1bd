'use strict';
// Both directions of data compatibility on one MongoDB database: documents created through
// the sibling services' Mongoose models are listed, paged, joined and updated by chat-service,
// and documents chat-service writes are read back by those models with every field intact.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const mongoose = require('mongoose');

const { useServer, userToken } = require('../../helpers/harness');
const { models } = require('../models');

const base = process.env.CHAT_TEST_MONGODB_URI;
if (!base) throw new Error('CHAT_TEST_MONGODB_URI is not set: run scripts/test.sh (it starts a MongoDB wire server)');
const [server, query] = base.split(/\?(.*)/s);
const dbUri = `${server.replace(/\/+$/, '')}/chat_mongoose_${process.pid}_${crypto.randomBytes(4).toString('hex')}${query ? `?${query}` : ''}`;

const ctx = useServer({ MONGODB_URI: dbUri });
const COMPANY = 'company-mongoose';
const alice = userToken('alice', COMPANY);
let connection;
let Conversation;
let Message;

before(async () => {
  connection = await mongoose.createConnection(dbUri).asPromise();
  ({ Conversation, Message } = models(connection));
});

after(async () => {
  if (connection) {
    await connection.dropDatabase();
    await connection.close();
  }
});

const at = (iso) => new Date(iso);

/** A conversation and its messages as the voice agent and agent service write them. */
async function seedWithMongoose() {
  const threadId = crypto.randomUUID();
  const conversation = await Conversation.create({
    agent_id: 'agent-7',
    company_id: COMPANY,
    contact_id: 'contact-1',
    participants: ['alice'],
    title: 'Order 1234',
    channel: 'voice',
    tags: ['vip'],
    metadata: { source: 'voice-agent', call: { id: 'call-1', seconds: 42 } },
    started_at: at('2025-01-01T10:00:00.000Z'),
    threads: [{ id: threadId, title: 'Billing', created_at: at('2025-01-01T10:05:00.000Z'), message_count: 1 }],
  });
  const older = await Conversation.create({
    agent_id: 'agent-7',
    company_id: COMPANY,
    channel: 'chat',
    status: 'ended',
    started_at: at('2024-12-01T09:00:00.000Z'),
  });
  await Conversation.create({ agent_id: 'agent-9', company_id: 'another-company', channel: 'chat' });

  const cid = conversation._id.toString();
  const messages = [];
  for (let i = 0; i < 4; i += 1) {
    const fromAgent = i % 2 === 1;
    messages.push(
      await Message.create({
        conversation_id: cid,
        sender_type: fromAgent ? 'agent' : 'user',
        sender_id: fromAgent ? 'agent-7' : 'contact-1',
        role: fromAgent ? 'assistant' : 'user',
        content: `m${i}`,
        message_type: 'audio',
        ai_metadata: fromAgent ? { model: 'gpt-x', tokens_used: 12, response_time_ms: 800 } : undefined,
        created_at: at(`2025-01-01T10:00:0${i}.000Z`),
      }),
    );
  }
  // Written by a service without the thread field at all: main thread as well.
  await Message.collection.insertOne({
    conversation_id: cid,
    sender_type: 'system',
    role: 'system',
    content: 'call transferred',
    message_type: 'system',
    created_at: at('2025-01-01T10:00:04.000Z'),
  });
  const reacted = await Message.create({
    conversation_id: cid,
    sender_type: 'user',
    sender_id: 'contact-1',
    role: 'user',
    content: 'thanks',
    metadata: {
      read_at: at('2025-01-01T10:01:00.000Z'),
      reactions: [{ emoji: '👍', user_id: 'bob', created_at: at('2025-01-01T10:01:30.000Z') }],
    },
    created_at: at('2025-01-01T10:00:05.000Z'),
  });
  await Message.create({
    conversation_id: cid,
    thread_id: threadId,
    sender_type: 'user',
    sender_id: 'contact-1',
    role: 'user',
    content: 'in thread',
    created_at: at('2025-01-01T10:05:01.000Z'),
  });
  return { conversation, older, threadId, messages, reacted };
}

test('documents written by Mongoose are listed, paged and joined by the service', async () => {
  const { conversation, older, threadId, messages, reacted } = await seedWithMongoose();
  const cid = conversation._id.toString();

  const list = await ctx.api('GET', '/api/conversations', { token: alice });
  assert.equal(list.status, 200);
  assert.equal(list.body.total, 2, 'only this company');
  assert.deepEqual(list.body.conversations.map((c) => c.id), [cid, older._id.toString()], 'newest started_at first');
  const c = list.body.conversations[0];
  assert.equal(c._id, cid);
  assert.equal(c.created_at, conversation.createdAt.toISOString(), 'createdAt is read as created_at');
  assert.equal(c.updated_at, conversation.updatedAt.toISOString());
  assert.equal(c.started_at, '2025-01-01T10:00:00.000Z');
  assert.equal(c.channel, 'voice');
  assert.deepEqual(c.metadata, { source: 'voice-agent', call: { id: 'call-1', seconds: 42 } });
  assert.deepEqual(c.threads, [{ id: threadId, title: 'Billing', created_at: '2025-01-01T10:05:00.000Z', message_count: 1 }]);

  const filtered = async (q) => (await ctx.api('GET', `/api/conversations?${q}`, { token: alice })).body.conversations.map((x) => x.id);
  assert.deepEqual(await filtered('status=ended'), [older._id.toString()]);
  assert.deepEqual(await filtered('channel=voice&tag=vip'), [cid]);
  assert.deepEqual(await filtered('startDate=2025-01-01'), [cid]);
  assert.deepEqual(await filtered('q=ORDER%201234'), [cid]);

  const newest = await ctx.api('GET', `/api/conversations/${cid}/messages?limit=3`, { token: alice });
  assert.equal(newest.status, 200);
  assert.equal(newest.body.total, 6, 'thread_id null and missing are both the main thread');
  assert.deepEqual(newest.body.messages.map((m) => m.content), ['m3', 'call transferred', 'thanks']);
  const olderPage = await ctx.api('GET', `/api/conversations/${cid}/messages?limit=3&offset=3`, { token: alice });
  assert.deepEqual(olderPage.body.messages.map((m) => m.content), ['m0', 'm1', 'm2']);

  const m1 = olderPage.body.messages[1];
  assert.equal(m1._id, messages[1]._id.toString());
  assert.equal(m1.id, m1._id);
  assert.equal(m1.conversation_id, cid);
  assert.equal(m1.thread_id, null);
  assert.equal(m1.sender_type, 'agent');
  assert.equal(m1.role, 'assistant');
  assert.equal(m1.message_type, 'audio');
  assert.equal(m1.created_at, '2025-01-01T10:00:01.000Z');
  assert.deepEqual(m1.ai_metadata, { model: 'gpt-x', tokens_used: 12, response_time_ms: 800 });
  const thanks = newest.body.messages[2];
  assert.equal(thanks.id, reacted._id.toString());
  assert.equal(thanks.metadata.read_at, '2025-01-01T10:01:00.000Z');
  assert.deepEqual(thanks.metadata.reactions, [{ emoji: '👍', user_id: 'bob', created_at: '2025-01-01T10:01:30.000Z' }]);

  const thread = await ctx.api('GET', `/api/conversations/${cid}/threads/${threadId}`, { token: alice });
  assert.equal(thread.status, 200);
  assert.equal(thread.body.thread.title, 'Billing');
  assert.deepEqual(thread.body.messages.map((m) => m.content), ['in thread']);

  // The internal list joins messages to their conversations' company.
  const joined = await ctx.api('POST', '/api/internal/messages/list', { internal: true, body: { companyId: COMPANY } });
  assert.equal(joined.status, 200);
  assert.equal(joined.body.total, 7);
  assert.equal(joined.body.messages[0].content, 'in thread', 'newest first');
  const none = await ctx.api('POST', '/api/internal/messages/list', { internal: true, body: { companyId: 'nobody' } });
  assert.equal(none.body.total, 0);
});

test('changes made by the service keep Mongoose documents intact', async () => {
  const { conversation, threadId, messages } = await seedWithMongoose();
  const cid = conversation._id.toString();
  const threadSubdocId = conversation.threads[0]._id.toString();

  const updated = await ctx.api('PATCH', `/api/conversations/${cid}`, { token: alice, body: { status: 'completed', tags: ['vip', 'refund'] } });
  assert.equal(updated.status, 200);
  const merged = await ctx.api('PATCH', `/api/internal/conversations/${cid}`, { internal: true, body: { metadata: { resolution: 'refund' } } });
  assert.equal(merged.status, 200);
  const posted = await ctx.api('POST', `/api/conversations/${cid}/threads/${threadId}`, { token: alice, body: { content: 'follow-up' } });
  assert.equal(posted.status, 201);
  const added = await ctx.api('POST', `/api/conversations/${cid}/participants`, { token: alice, body: { userId: 'carol' } });
  assert.equal(added.status, 200);
  const reacted = await ctx.api('PATCH', `/api/conversations/${cid}/messages/${messages[0]._id}`, { token: alice, body: { reaction: '🎉' } });
  assert.equal(reacted.status, 200);

  const doc = await Conversation.findById(cid);
  assert.equal(doc.validateSync(), undefined, 'still valid for the shared model');
  assert.equal(doc.status, 'completed');
  assert.deepEqual([...doc.tags], ['vip', 'refund']);
  assert.deepEqual(doc.metadata, { source: 'voice-agent', call: { id: 'call-1', seconds: 42 }, resolution: 'refund' });
  assert.deepEqual([...doc.participants], ['alice', 'carol']);
  assert.equal(doc.threads.length, 1);
  assert.equal(doc.threads[0]._id.toString(), threadSubdocId, 'the thread keeps its own _id');
  assert.equal(doc.threads[0].message_count, 2, 'counted on the Mongoose-created thread');
  assert.equal(doc.createdAt.getTime(), conversation.createdAt.getTime());
  assert.ok(doc.updatedAt > conversation.updatedAt, 'updatedAt moves on');
  assert.equal(doc.__v, 0);

  const m0 = await Message.findById(messages[0]._id);
  assert.equal(m0.validateSync(), undefined);
  assert.equal(m0.content, 'm0');
  assert.equal(m0.metadata.reactions.length, 1);
  assert.equal(m0.metadata.reactions[0].emoji, '🎉');
  assert.equal(m0.metadata.reactions[0].user_id, 'alice');
  assert.ok(m0.metadata.reactions[0].created_at instanceof Date);
});

test('documents the service writes read back through Mongoose with every field', async () => {
  const created = await ctx.api('POST', '/api/conversations', {
    token: alice,
    body: { agent_id: 'agent-3', channel: 'email', title: 'Invoice', tags: ['billing'], participants: ['bob'], contact_id: 'contact-5', metadata: { source: 'dashboard' } },
  });
  assert.equal(created.status, 201);
  const c = created.body.conversation;
  const thread = (await ctx.api('POST', `/api/conversations/${c.id}/threads`, { token: alice, body: { title: 'Refund' } })).body.thread;

  const doc = await Conversation.findById(c.id);
  assert.ok(doc, 'stored with an ObjectId _id');
  assert.equal(doc.validateSync(), undefined);
  assert.equal(doc._id.toString(), c.id);
  assert.equal(doc.agent_id, 'agent-3');
  assert.equal(doc.company_id, COMPANY);
  assert.equal(doc.contact_id, 'contact-5');
  assert.equal(doc.user_id, 'alice');
  assert.deepEqual([...doc.participants].sort(), ['alice', 'bob']);
  assert.equal(doc.title, 'Invoice');
  assert.equal(doc.channel, 'email');
  assert.equal(doc.status, 'active');
  assert.ok(doc.started_at instanceof Date);
  assert.equal(doc.started_at.toISOString(), c.started_at);
  assert.deepEqual([...doc.tags], ['billing']);
  assert.deepEqual(doc.metadata, { source: 'dashboard' });
  assert.equal(doc.createdAt.toISOString(), c.created_at);
  assert.ok(doc.updatedAt instanceof Date);
  assert.equal(doc.__v, 0);
  assert.equal(doc.threads.length, 1);
  assert.equal(doc.threads[0].id, thread.id);
  assert.equal(doc.threads[0].title, 'Refund');
  assert.equal(doc.threads[0].created_at.toISOString(), thread.created_at);
  assert.equal(doc.threads[0].message_count, 0);
  assert.ok(doc.threads[0]._id instanceof mongoose.Types.ObjectId);

  const sent = await ctx.api('POST', `/api/conversations/${c.id}/messages`, {
    token: alice,
    body: { content: 'See attached', attachments: [{ url: 'https://files.example.com/a.pdf', type: 'application/pdf', name: 'a.pdf', size: 10 }] },
  });
  assert.equal(sent.status, 201);
  const m = sent.body.message;
  const agentReply = await ctx.api('POST', '/api/internal/messages/create', {
    internal: true,
    body: { conversationId: c.id, content: 'On it', senderType: 'agent', messageType: 'text', threadId: thread.id },
  });
  assert.equal(agentReply.status, 200);

  const stored = await Message.findById(m.id);
  assert.ok(stored);
  assert.equal(stored.validateSync(), undefined);
  assert.equal(stored.conversation_id, c.id);
  assert.equal(stored.thread_id, null);
  assert.equal(stored.sender_type, 'user');
  assert.equal(stored.sender_id, 'alice');
  assert.equal(stored.role, 'user');
  assert.equal(stored.content, 'See attached');
  assert.equal(stored.message_type, 'text');
  assert.deepEqual(stored.attachments.map((a) => a.toObject()), [{ url: 'https://files.example.com/a.pdf', type: 'application/pdf', name: 'a.pdf', size: 10 }]);
  assert.ok(stored.created_at instanceof Date);
  assert.equal(stored.created_at.toISOString(), m.created_at);
  const reply = await Message.findById(agentReply.body.message.id);
  assert.equal(reply.role, 'assistant');
  assert.equal(reply.thread_id, thread.id);
  assert.equal((await Conversation.findById(c.id)).threads[0].message_count, 1);

  await ctx.api('PATCH', `/api/conversations/${c.id}/messages/${m.id}`, { token: alice, body: { content: 'See attached (v2)', markAsRead: true } });
  const edited = await Message.findById(m.id);
  assert.equal(edited.content, 'See attached (v2)');
  assert.ok(edited.metadata.edited_at instanceof Date);
  assert.ok(edited.metadata.read_at instanceof Date);

  const deleted = await ctx.api('DELETE', `/api/conversations/${c.id}/messages/${m.id}`, { token: alice });
  assert.equal(deleted.status, 200);
  const kept = await Message.findById(m.id);
  assert.ok(kept, 'kept for the audit trail');
  assert.ok(kept.metadata.deleted_at instanceof Date);
  const listed = await ctx.api('GET', `/api/conversations/${c.id}/messages`, { token: alice });
  assert.equal(listed.body.total, 0);
});
