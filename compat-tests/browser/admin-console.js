'use strict';
// The admin console (/admin) in a real headless Chromium, Debian's `chromium` package, driven
// by playwright-core: a non-admin token is turned away; with an admin token the console shows
// the node, its messages-per-second chart rises while a socket.io-client sends messages, and
// the playground connects with Socket.IO, joins a conversation, receives what another client
// sends and sends a message that the other client receives.
//
// CHROMIUM_BIN overrides /usr/bin/chromium; CHAT_TEST_SCREENSHOT=<file.png> keeps a
// screenshot of the console at the end.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { io } = require('socket.io-client');
const { startServer, JWT_SECRET } = require('../helpers/server');

const COMPANY = 'browser-co';
const WAIT_MS = 20_000;

/** An HS256 JWT signed with the test server's secret. */
function sign(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}`;
  return `${body}.${crypto.createHmac('sha256', JWT_SECRET).update(body).digest('base64url')}`;
}

const adminToken = sign({ sub: 'operator', company_id: COMPANY, app_metadata: { role: 'admin' } });
const talkerToken = sign({ sub: 'talker', company_id: COMPANY });
const viewerToken = sign({ sub: 'viewer', company_id: COMPANY });

let server;
let context;
let userDataDir;
const clients = [];

before(async () => {
  server = await startServer();
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-admin-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
});

after(async () => {
  for (const c of clients) c.disconnect();
  if (context) await context.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  if (server) await server.stop();
});

async function createConversation(token) {
  const res = await fetch(`${server.url}/api/conversations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ agent_id: 'agent-1', title: 'Browser test' }),
  });
  assert.equal(res.status, 201);
  return (await res.json()).conversation.id;
}

/** A socket.io-client in the conversation's room. */
async function member(token, conversationId) {
  const socket = io(server.url, { auth: { token }, transports: ['websocket'], reconnection: false });
  clients.push(socket);
  const ack = await new Promise((resolve, reject) => {
    socket.once('connect_error', reject);
    socket.once('connect', () => socket.emit('conversation:join', conversationId, resolve));
  });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return socket;
}

const send = (socket, conversationId, content) =>
  new Promise((resolve) => socket.emit('message:send', { conversationId, content }, resolve));

test('the admin console: metrics, chart and playground in headless Chromium', async () => {
  const conversationId = await createConversation(talkerToken);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    // Failed requests are checked below, where the expected refusal can be told apart.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`console: ${msg.text()}`);
  });
  let refusals = 0;
  page.on('response', (res) => {
    if (res.status() === 401 && res.url().endsWith('/admin/api/errors')) refusals += 1;
    else if (res.status() >= 400) problems.push(`${res.status()} ${res.url()}`);
  });

  await page.goto(`${server.url}/admin`);

  // Only an admin's token opens it.
  await page.fill('#admin-token', viewerToken);
  await page.click('#sign-in-form button');
  await page.waitForFunction(() => document.getElementById('sign-in-error').textContent.includes('Admin access required'), null, {
    timeout: WAIT_MS,
  });
  assert.equal(await page.isHidden('#console'), true);
  assert.equal(refusals, 1);

  await page.fill('#admin-token', adminToken);
  await page.click('#sign-in-form button');
  await page.waitForSelector('#console', { state: 'visible', timeout: WAIT_MS });
  await page.waitForFunction(() => /^version /.test(document.getElementById('version').textContent), null, { timeout: WAIT_MS });
  await page.waitForFunction(() => document.querySelector('#health td.status-ok'), null, { timeout: WAIT_MS });

  // The chart rises while a client sends messages.
  const talker = await member(talkerToken, conversationId);
  let sending = true;
  let sent = 0;
  const sender = (async () => {
    while (sending && sent < 200) {
      const ack = await send(talker, conversationId, `load ${sent}`);
      assert.equal(ack.ok, true, JSON.stringify(ack));
      sent += 1;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  // A line needs two points: the chart has drawn one that is above zero.
  await page.waitForFunction(
    () => Number(document.getElementById('chart').dataset.highest) > 0 && document.querySelector('#chart polyline.series'),
    null,
    { timeout: WAIT_MS },
  );
  sending = false;
  await sender;
  assert.match(await page.textContent('#rooms'), /^[1-9]/);
  assert.match(await page.textContent('#connections'), /^[1-9]/);

  // The playground: connect as another user, join, receive, send.
  await page.fill('#pg-token', viewerToken);
  await page.click('#pg-connect-button');
  await page.waitForFunction(() => document.getElementById('pg-status').textContent.startsWith('connected ('), null, {
    timeout: WAIT_MS,
  });
  await page.fill('#pg-conversation', conversationId);
  await page.click('#pg-join button');
  await page.waitForSelector('#pg-events li[data-event="ack conversation:join"]', { timeout: WAIT_MS });
  assert.match(await page.textContent('#pg-events li[data-event="ack conversation:join"]'), /"ok":true/);

  const fromNode = `hello from node ${crypto.randomUUID()}`;
  await send(talker, conversationId, fromNode);
  await page.waitForFunction(
    (text) => [...document.querySelectorAll('#pg-events li[data-event="message:new"]')].some((li) => li.textContent.includes(text)),
    fromNode,
    { timeout: WAIT_MS },
  );

  const fromBrowser = `hello from the browser ${crypto.randomUUID()}`;
  const heard = new Promise((resolve) =>
    talker.on('message:new', ({ message }) => message.content === fromBrowser && resolve(message)),
  );
  await page.fill('#pg-message', fromBrowser);
  await page.click('#pg-send button');
  const message = await heard;
  assert.equal(message.sender_id, 'viewer');
  await page.waitForFunction(
    (text) => [...document.querySelectorAll('#pg-events li[data-event="ack message:send"]')].some((li) => li.textContent.includes(text)),
    fromBrowser,
    { timeout: WAIT_MS },
  );

  if (process.env.CHAT_TEST_SCREENSHOT) await page.screenshot({ path: process.env.CHAT_TEST_SCREENSHOT, fullPage: true });
  assert.deepEqual(problems, [], 'the page logged no errors and no request failed');
  assert.equal(refusals, 1, 'the admin token was never refused');
});
