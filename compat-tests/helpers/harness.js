'use strict';
// What every test file uses: one server per file (started in `before`, stopped in `after`),
// tokens, socket.io clients that record every event they receive, and a small REST client.
//
// Waiting is event driven: `waitFor` resolves as soon as a matching event has arrived (also
// if it arrived before the call), and fails the test after a timeout. Only "nothing arrives"
// checks wait a fixed, short time.

const { before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const jwt = require('jsonwebtoken');
const { io } = require('socket.io-client');

const { startServer, JWT_SECRET, INTERNAL_SERVICE_TOKEN } = require('./server');

const EVENT_TIMEOUT_MS = 5_000;
/**
 * A reverse proxy in front of the nodes (scripts/test-nginx.sh): clients connect through it
 * while the harness still starts the nodes behind it.
 */
const PROXY_URL = process.env.CHAT_TEST_PROXY_URL || null;
/** How long a negative check ("this socket receives nothing") listens. */
const QUIET_MS = 300;

// ---------------------------------------------------------------------------------------------
// Tokens

/** A Supabase-style user JWT (HS256, `sub`, `company_id`). */
function userToken(userId, companyId, { claims = {}, ...options } = {}) {
  const payload = { sub: userId, email: `${userId}@example.test`, ...claims };
  if (companyId !== undefined) payload.company_id = companyId;
  return jwt.sign(payload, JWT_SECRET, { algorithm: 'HS256', expiresIn: '1h', ...options });
}

/** The signed widget token: one conversation, one company. */
function widgetToken(conversationId, companyId) {
  return jwt.sign({ typ: 'widget', conversation_id: conversationId, company_id: companyId }, JWT_SECRET, {
    algorithm: 'HS256',
    expiresIn: '1h',
  });
}

/** The deployed widget's unsigned token: base64 of its JSON. */
function legacyWidgetToken(conversationId, companyId, extra = {}) {
  return Buffer.from(JSON.stringify({ conversationId, companyId, ...extra })).toString('base64');
}

// ---------------------------------------------------------------------------------------------
// Event recording

function describeArgs(args) {
  try {
    return JSON.stringify(args).slice(0, 300);
  } catch {
    return String(args);
  }
}

/**
 * Keeps every event a socket receives, in order. `waitFor` takes the first matching event
 * not taken before, so two waits for the same event name see two different events.
 */
class Recorder {
  constructor(socket) {
    this.events = [];
    this.waiters = [];
    socket.onAny((event, ...args) => {
      const record = { event, data: args[0], args, taken: false };
      this.events.push(record);
      for (const w of [...this.waiters]) w(record);
    });
  }

  find(event, where) {
    return this.events.find((r) => !r.taken && r.event === event && where(r.data, r.args));
  }

  /** Resolves with the payload of the next matching `event`; rejects after `timeout` ms. */
  waitFor(event, where = () => true, timeout = EVENT_TIMEOUT_MS) {
    const already = this.find(event, where);
    if (already) {
      already.taken = true;
      return Promise.resolve(already.data);
    }
    return new Promise((resolve, reject) => {
      const waiter = (record) => {
        if (record.taken || record.event !== event || !where(record.data, record.args)) return;
        record.taken = true;
        done();
        resolve(record.data);
      };
      const timer = setTimeout(() => {
        done();
        const seen = this.events.map((r) => `${r.event} ${describeArgs(r.args)}`).join('\n  ');
        reject(new Error(`no matching "${event}" within ${timeout} ms; received:\n  ${seen || '(nothing)'}`));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      this.waiters.push(waiter);
    });
  }

  /** Listens for `ms` and fails if a matching `event` (not already taken) arrives. */
  async expectNone(event, where = () => true, ms = QUIET_MS) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    const got = this.find(event, where);
    assert.equal(got, undefined, `unexpected "${event}": ${got && describeArgs(got.args)}`);
  }

  /** Names of all events received so far. */
  names() {
    return this.events.map((r) => r.event);
  }
}

// ---------------------------------------------------------------------------------------------
// The per-file server and its clients

/**
 * Registers `before`/`after` hooks that start a fresh server with `extraEnv` for the file and
 * returns the handle tests use. Sockets opened in a test are closed after it. When the run
 * has several nodes (CHAT_TEST_NODES), sockets and REST calls go to them in turn;
 * `options.nodes` pins a file to a number of nodes (for per-process settings).
 */
function useServer(extraEnv = {}, options = {}) {
  const ctx = new ServerContext(extraEnv, options);
  before(() => ctx.start());
  afterEach(() => ctx.closeSockets());
  after(() => ctx.stop());
  return ctx;
}

class ServerContext {
  constructor(extraEnv, options) {
    this.extraEnv = extraEnv;
    this.options = options;
    this.server = null;
    this.sockets = new Set();
    this.turn = 0;
  }

  async start() {
    this.server = await startServer(this.extraEnv, this.options);
  }

  /** The next node in turn: consecutive clients and calls land on different nodes. Behind a
   * proxy, the proxy: it picks the node. */
  nextUrl() {
    if (PROXY_URL) return PROXY_URL;
    const urls = this.server.urls;
    return urls[this.turn++ % urls.length];
  }

  async stop() {
    this.closeSockets();
    if (this.server) await this.server.stop();
  }

  get url() {
    return PROXY_URL || this.server.url;
  }

  closeSockets() {
    for (const s of this.sockets) s.disconnect();
    this.sockets.clear();
  }

  /**
   * A socket.io-client socket, as the dashboard creates it unless `options` say otherwise,
   * with a `rec` Recorder attached before it connects. Not yet connected.
   */
  socket({ token, ...options } = {}) {
    const s = io(this.nextUrl(), {
      transports: ['websocket', 'polling'],
      forceNew: true, // each client gets its own connection, like separate browser tabs
      reconnection: false,
      ...(token !== undefined ? { auth: { token } } : {}),
      ...sourceAddress(),
      ...options,
    });
    s.rec = new Recorder(s);
    this.sockets.add(s);
    return s;
  }

  /** Connects and resolves once the server accepted the socket. */
  connect(options = {}) {
    const s = this.socket(options);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('connect timed out')), EVENT_TIMEOUT_MS);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('connect_error', (err) => {
        clearTimeout(timer);
        reject(new Error(`connect_error: ${err.message}`));
      });
    });
  }

  /** Connects expecting a refusal; resolves with the `connect_error` error. */
  connectError(options = {}) {
    const s = this.socket(options);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no connect_error within timeout')), EVENT_TIMEOUT_MS);
      s.once('connect', () => {
        clearTimeout(timer);
        reject(new Error('connected, but a connect_error was expected'));
      });
      s.once('connect_error', (err) => {
        clearTimeout(timer);
        resolve(err);
      });
    });
  }

  /** A connected socket that has joined `conversationId` (and consumed its `conversation:joined`). */
  async joined(conversationId, options) {
    const s = await this.connect(options);
    const ack = await emitAck(s, 'conversation:join', conversationId);
    assert.equal(ack.ok, true, `join failed: ${describeArgs(ack)}`);
    await s.rec.waitFor('conversation:joined', (j) => j.id === conversationId);
    return s;
  }

  /** A REST call; `token` is a bearer token (`internal: true` uses the service token). */
  async api(method, path, { token, body, internal = false } = {}) {
    const headers = {};
    const bearerToken = internal ? INTERNAL_SERVICE_TOKEN : token;
    if (bearerToken) headers.authorization = `Bearer ${bearerToken}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${this.nextUrl()}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    return { status: res.status, body: json, headers: res.headers };
  }

  /** Creates a conversation as `token`'s user and returns it. */
  async createConversation(token, fields = {}) {
    const res = await this.api('POST', '/api/conversations', {
      token,
      body: { agent_id: 'agent-1', channel: 'chat', ...fields },
    });
    assert.equal(res.status, 201, `create conversation: ${describeArgs(res.body)}`);
    return res.body.conversation;
  }
}

let sourceTurn = 0;

/**
 * Behind a proxy on this machine, each socket connects from its own loopback address
 * (127.0.0.2, 127.0.0.3, ...), as separate clients would: the proxy keeps each one on one node
 * and spreads them over the nodes. Both transports use the agent (polling requests and the
 * WebSocket handshake).
 */
function sourceAddress() {
  if (!PROXY_URL || !['127.0.0.1', 'localhost'].includes(new URL(PROXY_URL).hostname)) return {};
  const localAddress = `127.0.0.${2 + (sourceTurn++ % 250)}`;
  return { agent: new http.Agent({ localAddress }) };
}

/** `emit` with an acknowledgement; rejects if the server does not answer in time. */
function emitAck(socket, event, ...args) {
  return socket.timeout(EVENT_TIMEOUT_MS).emitWithAck(event, ...args);
}

/** Resolves when `socket` disconnects, with the reason. */
function disconnected(socket) {
  if (!socket.connected) return Promise.resolve('already disconnected');
  return new Promise((resolve) => socket.once('disconnect', resolve));
}

/** An id in ObjectId form that names nothing. */
const MISSING_ID = 'aaaaaaaaaaaaaaaaaaaaaaaa';

module.exports = {
  useServer,
  userToken,
  widgetToken,
  legacyWidgetToken,
  emitAck,
  disconnected,
  MISSING_ID,
  QUIET_MS,
  JWT_SECRET,
};
