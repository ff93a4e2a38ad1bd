'use strict';
// Presence: `presence:update` when a user's first socket connects and when the last one goes
// (two tabs: still online while one is open), `user:joined`/`user:left` per socket, and
// GET /api/conversations/:id/presence listing who is in the room.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck, disconnected, QUIET_MS } = require('../helpers/harness');

const ctx = useServer();
const COMPANY = 'company-presence';
const alice = userToken('pres-alice', COMPANY);
const bob = userToken('pres-bob', COMPANY);
const carol = userToken('pres-carol', COMPANY);

async function onlineIn(conversationId, token) {
  const res = await ctx.api('GET', `/api/conversations/${conversationId}/presence`, { token });
  assert.equal(res.status, 200);
  return res.body.online;
}

test('a user with two tabs goes online with the first and offline with the last', async () => {
  // Alice takes part in the conversation (she created it) but has no socket yet.
  const conv = await ctx.createConversation(alice);
  const b = await ctx.joined(conv.id, { token: bob });
  assert.deepEqual(await onlineIn(conv.id, alice), ['pres-bob']);

  const tab1 = await ctx.connect({ token: alice });
  assert.deepEqual(await b.rec.waitFor('presence:update', (p) => p.userId === 'pres-alice'), {
    userId: 'pres-alice',
    status: 'online',
  });
  await emitAck(tab1, 'conversation:join', conv.id);
  assert.deepEqual(await b.rec.waitFor('user:joined'), { conversationId: conv.id, userId: 'pres-alice' });

  // A second tab is not news.
  const tab2 = await ctx.joined(conv.id, { token: alice });
  assert.deepEqual(await b.rec.waitFor('user:joined'), { conversationId: conv.id, userId: 'pres-alice' });
  await b.rec.expectNone('presence:update', (p) => p.userId === 'pres-alice');
  assert.deepEqual(await onlineIn(conv.id, bob), ['pres-alice', 'pres-bob']);

  // Closing one tab: that socket left the room, but alice is still online and still present.
  tab1.disconnect();
  assert.deepEqual(await b.rec.waitFor('user:left'), { conversationId: conv.id, userId: 'pres-alice' });
  await b.rec.expectNone('presence:update', (p) => p.userId === 'pres-alice');
  assert.deepEqual(await onlineIn(conv.id, bob), ['pres-alice', 'pres-bob']);

  // Closing the last one.
  tab2.disconnect();
  assert.deepEqual(await b.rec.waitFor('user:left'), { conversationId: conv.id, userId: 'pres-alice' });
  assert.deepEqual(await b.rec.waitFor('presence:update', (p) => p.userId === 'pres-alice'), {
    userId: 'pres-alice',
    status: 'offline',
  });
  assert.deepEqual(await onlineIn(conv.id, bob), ['pres-bob']);
});

test('presence:update reaches the rooms a non-participant was in when they go', async () => {
  const conv = await ctx.createConversation(alice);
  const a = await ctx.joined(conv.id, { token: alice });
  // Carol is not a participant: the room she joined is where her status matters.
  const c = await ctx.joined(conv.id, { token: carol });
  assert.deepEqual(await a.rec.waitFor('user:joined'), { conversationId: conv.id, userId: 'pres-carol' });
  assert.deepEqual(await onlineIn(conv.id, alice), ['pres-alice', 'pres-carol']);

  const gone = disconnected(c);
  c.disconnect();
  await gone;
  assert.deepEqual(await a.rec.waitFor('user:left'), { conversationId: conv.id, userId: 'pres-carol' });
  assert.deepEqual(await a.rec.waitFor('presence:update', (p) => p.userId === 'pres-carol'), {
    userId: 'pres-carol',
    status: 'offline',
  });
  assert.deepEqual(await onlineIn(conv.id, alice), ['pres-alice']);
});

test('presence of another tenant\'s conversation is not found', async () => {
  const conv = await ctx.createConversation(alice);
  const res = await ctx.api('GET', `/api/conversations/${conv.id}/presence`, { token: userToken('eve', 'other-company') });
  assert.equal(res.status, 404);
  assert.deepEqual(res.body, { error: 'Conversation not found' });
});

test('a socket that closes while its join is still being handled leaves no ghost behind', async () => {
  // A page that joins and navigates away at once: the disconnect overtakes the join.
  const hasty = Array.from({ length: 5 }, (_, i) => `hasty-${i}`);
  const conv = await ctx.createConversation(alice, { participants: hasty });
  const b = await ctx.joined(conv.id, { token: bob });
  await Promise.all(
    hasty.map(async (user) => {
      const s = await ctx.connect({ token: userToken(user, COMPANY) });
      s.emit('conversation:join', conv.id);
      s.disconnect();
    }),
  );
  // Each went offline (they take part in the conversation, so bob is told)...
  for (const user of hasty) {
    await b.rec.waitFor('presence:update', (p) => p.userId === user && p.status === 'offline');
  }
  // ...and once any join still in flight has finished, none of them is left in the room.
  await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
  assert.deepEqual(await onlineIn(conv.id, bob), ['pres-bob']);
  const count = (event, user) => b.rec.events.filter((r) => r.event === event && r.data.userId === user).length;
  for (const user of hasty) {
    assert.equal(count('user:joined', user), count('user:left', user), `${user} joined without leaving`);
  }
});
