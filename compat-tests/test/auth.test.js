'use strict';
// Handshake authentication: the token comes from `auth.token`, else the Authorization header;
// refusals are `connect_error` with the contract's messages. Legacy unsigned widget tokens
// are refused unless ALLOW_LEGACY_WIDGET_TOKENS=true (not set here: the default).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const jwt = require('jsonwebtoken');

const { useServer, userToken, legacyWidgetToken, emitAck, JWT_SECRET } = require('../helpers/harness');

const ctx = useServer();
const COMPANY = 'company-auth';

function base64url(value) {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

test('no token: connect_error "Authentication required"', async () => {
  for (const options of [{}, { auth: {} }, { token: '' }, { auth: { token: null } }]) {
    const err = await ctx.connectError(options);
    assert.equal(err.message, 'Authentication required', `options ${JSON.stringify(options)}`);
  }
  // Polling too: the refusal is a Socket.IO connect error, not an HTTP failure.
  const err = await ctx.connectError({ transports: ['polling'] });
  assert.equal(err.message, 'Authentication required');
});

test('bad, expired and unsigned tokens: connect_error "Invalid or expired token"', async () => {
  const now = Math.floor(Date.now() / 1000);
  const cases = {
    'wrong secret': jwt.sign({ sub: 'u1', company_id: COMPANY }, 'another-secret-0123456789abcdef', { expiresIn: '1h' }),
    expired: jwt.sign({ sub: 'u1', company_id: COMPANY, exp: now - 3600 }, JWT_SECRET),
    'alg none': `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ sub: 'u1', company_id: COMPANY, exp: now + 3600 })}.`,
    'HS512 with the right secret': jwt.sign({ sub: 'u1', company_id: COMPANY }, JWT_SECRET, { algorithm: 'HS512', expiresIn: '1h' }),
    'no exp': jwt.sign({ sub: 'u1', company_id: COMPANY }, JWT_SECRET, { noTimestamp: true }),
    garbage: 'not-a-token',
    'legacy widget token while disabled': legacyWidgetToken('65a1b2c3d4e5f6a7b8c9d0e1', COMPANY),
  };
  for (const [name, token] of Object.entries(cases)) {
    const err = await ctx.connectError({ token });
    assert.equal(err.message, 'Invalid or expired token', name);
  }
  const viaHeader = await ctx.connectError({
    transports: ['polling'],
    extraHeaders: { Authorization: `Bearer ${cases.expired}` },
  });
  assert.equal(viaHeader.message, 'Invalid or expired token');
});

test('the Authorization header works when auth.token is absent, over polling and websocket', async () => {
  const token = userToken('header-user', COMPANY);
  const conv = await ctx.createConversation(token);
  for (const transports of [['polling'], ['websocket'], ['polling', 'websocket']]) {
    const s = await ctx.connect({ transports, extraHeaders: { Authorization: `Bearer ${token}` } });
    const ack = await emitAck(s, 'conversation:join', conv.id);
    assert.equal(ack.ok, true, `transports ${transports}`);
    const sent = await emitAck(s, 'message:send', { conversationId: conv.id, content: `via header ${transports}` });
    assert.equal(sent.ok, true);
    assert.equal(sent.message.sender_id, 'header-user');
    s.disconnect();
  }
});

test('Supabase-style tokens: company from app_metadata or user_metadata', async () => {
  const creator = userToken('owner', COMPANY);
  const conv = await ctx.createConversation(creator);
  const appMeta = userToken('supa-1', undefined, { claims: { app_metadata: { company_id: COMPANY }, aud: 'authenticated' } });
  const userMeta = userToken('supa-2', undefined, { claims: { user_metadata: { company_id: COMPANY }, role: 'authenticated' } });
  for (const token of [appMeta, userMeta]) {
    const s = await ctx.connect({ token });
    const ack = await emitAck(s, 'conversation:join', conv.id);
    assert.equal(ack.ok, true);
  }
});

test('a refused handshake does not disturb connected clients', async () => {
  const token = userToken('steady', COMPANY);
  const conv = await ctx.createConversation(token);
  const s = await ctx.joined(conv.id, { token });
  await ctx.connectError({ token: 'bad' });
  await ctx.connectError({});
  const ack = await emitAck(s, 'message:send', { conversationId: conv.id, content: 'still here' });
  assert.equal(ack.ok, true);
  await s.rec.waitFor('message:new', (e) => e.message.id === ack.message.id);
});
