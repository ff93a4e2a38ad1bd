'use strict';
// A client that comes back after RECOVERY_WINDOW_MS gets a new session (`recovered` false) and
// carries on: it joins again and catches up with `lastMessageId`, as any client without
// connection state recovery does.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck, disconnected } = require('../helpers/harness');

const WINDOW_MS = 1000;
const ctx = useServer({ RECOVERY_WINDOW_MS: String(WINDOW_MS) });
const COMPANY = 'company-recovery-window';

test('after the window the session is not recovered, and catching up by lastMessageId still works', async () => {
  const owner = userToken('win-owner', COMPANY);
  const conversation = await ctx.createConversation(owner);
  const sender = await ctx.joined(conversation.id, { token: owner });
  const member = await ctx.joined(conversation.id, { token: userToken('win-member', COMPANY), transports: ['websocket'] });
  const first = await emitAck(sender, 'message:send', { conversationId: conversation.id, content: 'first' });
  await member.rec.waitFor('message:new', (m) => m.message.id === first.message.id);

  const gone = disconnected(member);
  member.io.engine.close();
  await gone;
  const missed = await emitAck(sender, 'message:send', { conversationId: conversation.id, content: 'while away' });
  // Past the window: the session and the log entry are no longer there to recover from.
  await new Promise((resolve) => setTimeout(resolve, WINDOW_MS + 600));

  const connected = new Promise((resolve) => member.once('connect', resolve));
  member.connect();
  await connected;
  assert.equal(member.recovered, false);
  const joined = await emitAck(member, 'conversation:join', { conversationId: conversation.id, lastMessageId: first.message.id });
  assert.equal(joined.ok, true);
  assert.deepEqual(joined.missed.map((m) => m.id), [missed.message.id]);
});
