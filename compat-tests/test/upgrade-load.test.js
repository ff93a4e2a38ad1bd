'use strict';
// The polling → WebSocket upgrade, many times in a row with several clients upgrading at once.
// Each client polls while its WebSocket probe is accepted, so its polling requests meet the
// start of the server's upgrade; one answered with an error ("xhr poll error") costs the client
// its session. Every upgrade must complete, and what was sent around it must arrive.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { useServer, userToken, emitAck } = require('../helpers/harness');

const ctx = useServer();
const COMPANY = 'company-upgrade-load';
const ROUNDS = 50;
const CLIENTS = 8;
/** Bound on one client's connect-and-upgrade, so a lost upgrade fails instead of hanging. */
const UPGRADE_WAIT_MS = 10_000;

function describeError(err) {
  return [err.message, err.description, err.context && err.context.status].filter((v) => v !== undefined).join(' ');
}

/**
 * Connects a polling client and resolves once it is connected and upgraded to WebSocket.
 * Rejects with the client's own error if the session fails on the way.
 */
function connectAndUpgrade(socket) {
  const engine = socket.io.engine;
  let upgraded = engine.transport.name === 'websocket';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`not connected and upgraded (transport ${engine.transport.name})`)),
      UPGRADE_WAIT_MS,
    );
    const fail = (what) => {
      clearTimeout(timer);
      reject(new Error(what));
    };
    const done = () => {
      if (!upgraded || !socket.connected) return;
      clearTimeout(timer);
      resolve();
    };
    engine.once('upgrade', () => {
      upgraded = true;
      done();
    });
    engine.once('close', (reason, description) =>
      fail(`engine closed before the upgrade: ${reason}${description ? ` (${describeError(description)})` : ''}`),
    );
    socket.once('connect_error', (err) => fail(`connect_error: ${describeError(err)}`));
    socket.once('connect', done);
  });
}

test(`${ROUNDS} rounds of ${CLIENTS} clients upgrading from polling to websocket at once`, async () => {
  const owner = userToken('upl-owner', COMPANY);
  const conv = await ctx.createConversation(owner);
  // A polling-only member receives what the upgrading clients send.
  const member = await ctx.joined(conv.id, { token: userToken('upl-member', COMPANY), transports: ['polling'] });

  for (let round = 0; round < ROUNDS; round++) {
    const clients = Array.from({ length: CLIENTS }, (_, i) =>
      ctx.socket({ token: userToken(`upl-${round}-${i}`, COMPANY), transports: ['polling', 'websocket'] }),
    );
    await Promise.all(
      clients.map(async (s, i) => {
        const where = `round ${round}, client ${i}`;
        const upgrade = connectAndUpgrade(s);
        // Sent as soon as the socket is connected, while the upgrade is under way.
        const joining = new Promise((resolve) => s.once('connect', () => resolve(emitAck(s, 'conversation:join', conv.id))));
        await upgrade.catch((err) => assert.fail(`${where}: ${err.message}`));
        assert.equal(s.io.engine.transport.name, 'websocket', where);
        assert.equal((await joining).ok, true, `${where}: join across the upgrade`);

        const content = `${where} over websocket`;
        const ack = await emitAck(s, 'message:send', { conversationId: conv.id, content });
        assert.equal(ack.ok, true, `${where}: send after the upgrade`);
        await member.rec.waitFor('message:new', (e) => e.message.id === ack.message.id);
      }),
    );
    for (const s of clients) s.disconnect();
  }
  assert.ok(member.connected);
});
