'use strict';
// Connection state recovery with the unchanged socket.io-client 4.8: a member whose transport
// drops and who reconnects within the window gets `recovered === true`, every message sent
// meanwhile once and in order, and its rooms back; also on the other node (CHAT_TEST_NODES=2,
// Redis). A session the server does not know is simply a new one.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck, disconnected } = require('../helpers/harness');

const ctx = useServer();
const COMPANY = 'company-recovery';
/** Messages sent while the member is away. */
const MISSED = 20;

/** A member connected and in `conversationId`, with a first message received: socket.io-client
 * only asks for recovery once it has an offset, i.e. after a first room event. */
async function memberWithOffset(conversationId, sender, name) {
  const member = await ctx.joined(conversationId, { token: userToken(name, COMPANY), transports: ['websocket'] });
  const first = await emitAck(sender, 'message:send', { conversationId, content: `${name} first` });
  assert.equal(first.ok, true);
  await member.rec.waitFor('message:new', (m) => m.message.id === first.message.id);
  return member;
}

/** Drops the member's transport (not a Socket.IO disconnect), as a network failure would. */
async function dropTransport(member) {
  const gone = disconnected(member);
  member.io.engine.close();
  await gone;
}

/** Reconnects the way socket.io-client does after a drop, optionally to another node. */
async function reconnect(member, url) {
  if (url) member.io.uri = url;
  const connected = new Promise((resolve, reject) => {
    member.once('connect', resolve);
    member.once('connect_error', reject);
  });
  member.connect();
  await connected;
}

async function sendMissed(sender, conversationId, tag) {
  const ids = [];
  for (let i = 0; i < MISSED; i++) {
    const ack = await emitAck(sender, 'message:send', { conversationId, content: `${tag} ${i}` });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    ids.push(ack.message.id);
  }
  return ids;
}

async function checkRecovery(member, sender, conversationId, missedIds) {
  assert.equal(member.recovered, true, 'the session is recovered');
  for (const id of missedIds) await member.rec.waitFor('message:new', (m) => m.message.id === id);
  const received = member.rec.events.filter((r) => r.event === 'message:new').map((r) => r.data.message.id);
  const afterDrop = received.slice(received.indexOf(missedIds[0]));
  assert.deepEqual(afterDrop, missedIds, 'every missed message once, in send order');
  // Each carries its offset as a last argument, which the client keeps for the next time.
  const last = member.rec.events.filter((r) => r.event === 'message:new').at(-1);
  assert.equal(typeof last.args.at(-1), 'string');

  // Still in the room without joining again.
  const after = await emitAck(sender, 'message:send', { conversationId, content: 'after the reconnect' });
  assert.equal(after.ok, true);
  await member.rec.waitFor('message:new', (m) => m.message.id === after.message.id);
  await member.rec.expectNone('message:new', () => true);
}

test('a member whose transport dropped gets every message it missed, once, in order, and keeps its rooms', async () => {
  const owner = userToken('rec-owner', COMPANY);
  const conversation = await ctx.createConversation(owner);
  const sender = await ctx.joined(conversation.id, { token: owner });
  const member = await memberWithOffset(conversation.id, sender, 'rec-member');
  const url = member.io.uri;

  await dropTransport(member);
  const missed = await sendMissed(sender, conversation.id, 'same node');
  await reconnect(member, url);
  await checkRecovery(member, sender, conversation.id, missed);
});

test('a member that reconnects to the other node recovers there', async (t) => {
  const urls = ctx.server.urls;
  if (urls.length < 2) return t.skip('one node in this run (CHAT_TEST_NODES=2 runs it)');
  const owner = userToken('rec-owner-2', COMPANY);
  const conversation = await ctx.createConversation(owner);
  const sender = await ctx.joined(conversation.id, { token: owner });
  const member = await memberWithOffset(conversation.id, sender, 'rec-member-2');
  const other = urls.find((u) => u !== member.io.uri);

  await dropTransport(member);
  const missed = await sendMissed(sender, conversation.id, 'other node');
  await reconnect(member, other);
  await checkRecovery(member, sender, conversation.id, missed);
});

test('an unknown session is a new one: not recovered, and the client carries on as before', async () => {
  const owner = userToken('rec-owner-3', COMPANY);
  const conversation = await ctx.createConversation(owner);
  const sender = await ctx.joined(conversation.id, { token: owner });
  const member = await memberWithOffset(conversation.id, sender, 'rec-member-3');

  await dropTransport(member);
  member._pid = 'not-a-session-this-server-gave';
  await reconnect(member);
  assert.equal(member.recovered, false);
  // It catches up the usual way and gets new messages live.
  const joined = await emitAck(member, 'conversation:join', { conversationId: conversation.id });
  assert.equal(joined.ok, true);
  const next = await emitAck(sender, 'message:send', { conversationId: conversation.id, content: 'next' });
  await member.rec.waitFor('message:new', (m) => m.message.id === next.message.id);
});

test('another user cannot take over a session by its id', async () => {
  const owner = userToken('rec-owner-4', COMPANY);
  const conversation = await ctx.createConversation(owner);
  const sender = await ctx.joined(conversation.id, { token: owner });
  const member = await memberWithOffset(conversation.id, sender, 'rec-member-4');
  await dropTransport(member);

  const intruder = ctx.socket({ token: userToken('rec-intruder', 'another-company'), transports: ['websocket'], autoConnect: false });
  intruder._pid = member._pid;
  intruder._lastOffset = member._lastOffset;
  await reconnect(intruder);
  assert.equal(intruder.recovered, false);
  await emitAck(sender, 'message:send', { conversationId: conversation.id, content: 'private' });
  await intruder.rec.expectNone('message:new', () => true);
});
