'use strict';
// Starts a fresh chat-service binary for one test file and stops it afterwards. Each file
// gets its own process (or, with CHAT_TEST_NODES=2, processes sharing one database and one
// Redis namespace), port and data directory, so files can run in parallel and a test never
// sees another file's state.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const JWT_SECRET = 'compat-test-secret-0123456789abcdef';
const INTERNAL_SERVICE_TOKEN = 'compat-internal-token-0123456789';

const READY_LINE = /^chat-service listening on (http:\/\/\S+)\s*$/;
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

// Servers still running in this process, with their data directories: killed and removed
// if the test process exits or is interrupted, so an aborted run leaves nothing behind.
const running = new Map();
function killAll() {
  for (const [child, dataDir] of running) {
    child.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + os.constants.signals[signal]);
  });
}

function serverBinary() {
  const fromEnv = process.env.CHAT_SERVICE_BIN;
  if (fromEnv) return path.resolve(fromEnv);
  return path.resolve(__dirname, '..', '..', 'target', 'debug', 'chat-service');
}

/** Environment for the child: only what the service needs, so a developer's shell cannot
 * change what is tested. */
function serverEnv(dataDir, extraEnv) {
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    RUST_LOG: process.env.CHAT_TEST_RUST_LOG || 'warn',
    RUST_BACKTRACE: '1',
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: dataDir,
    JWT_SECRET,
    INTERNAL_SERVICE_TOKEN,
  };
  // The store and Redis are opted into per run (scripts/test.sh): CHAT_TEST_STORE=mongo runs
  // the suite on MongoDB, CHAT_TEST_WITH_REDIS=1 with the Redis adapter, cache and limits.
  if (process.env.CHAT_TEST_STORE === 'mongo') {
    if (!process.env.CHAT_TEST_MONGODB_URI) throw new Error('CHAT_TEST_STORE=mongo needs CHAT_TEST_MONGODB_URI');
    // One database per server process, so parallel files never share documents. Options
    // after `?` (replicaSet, authSource...) stay after the database name.
    const [base, query] = process.env.CHAT_TEST_MONGODB_URI.split(/\?(.*)/s);
    const dbName = `chat_compat_${process.pid}_${crypto.randomBytes(4).toString('hex')}`;
    env.MONGODB_URI = `${base.replace(/\/+$/, '')}/${dbName}${query ? `?${query}` : ''}`;
  }
  if (process.env.CHAT_TEST_WITH_REDIS === '1') {
    if (!process.env.CHAT_TEST_REDIS_URL) throw new Error('CHAT_TEST_WITH_REDIS=1 needs CHAT_TEST_REDIS_URL');
    env.REDIS_URL = process.env.CHAT_TEST_REDIS_URL;
  }
  if (process.env.CHAT_TEST_PROXY_URL) {
    // Behind the proxy every connection comes from the proxy's address: it caps connections
    // per client, and names the client in X-Forwarded-For.
    env.MAX_CONNECTIONS_PER_IP = '0';
    env.TRUSTED_PROXIES = '127.0.0.1';
  }
  for (const [key, value] of Object.entries(extraEnv)) {
    if (value === undefined || value === null) delete env[key];
    else env[key] = String(value);
  }
  return env;
}

/**
 * The ports the nodes must listen on, from CHAT_TEST_NODE_PORTS (`4101,4102`): a proxy in
 * front of them (CHAT_TEST_PROXY_URL) was configured with these. Unset: any free port.
 * @returns {string[] | null}
 */
function fixedPorts(nodes) {
  const list = process.env.CHAT_TEST_NODE_PORTS;
  if (!list) return null;
  const ports = list.split(',').map((p) => p.trim());
  if (ports.length !== nodes || ports.some((p) => !/^[1-9][0-9]*$/.test(p))) {
    throw new Error(`CHAT_TEST_NODE_PORTS=${list} must list one port for each of the ${nodes} node(s)`);
  }
  return ports;
}

/**
 * Spawns the server and resolves once it prints its listening line. With `nodes` > 1 (default
 * `CHAT_TEST_NODES`, needs CHAT_TEST_WITH_REDIS=1) it starts that many processes serving one
 * set of rooms: one database, one Redis namespace of their own. With CHAT_TEST_NODE_PORTS
 * the nodes listen on those ports, so only one test file can run at a time.
 * @param {Record<string, string|number|boolean|undefined>} extraEnv per-file settings
 * @param {{nodes?: number}} options
 * @returns {Promise<{url: string, urls: string[], stop: () => Promise<void>, output: () => string}>}
 */
async function startServer(extraEnv = {}, { nodes = Number(process.env.CHAT_TEST_NODES || 1) } = {}) {
  const bin = serverBinary();
  if (!fs.existsSync(bin)) {
    throw new Error(`server binary not found at ${bin}: run \`cargo build\` or set CHAT_SERVICE_BIN`);
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-compat-'));
  const env = serverEnv(dataDir, extraEnv);
  if (nodes > 1) {
    if (!env.REDIS_URL) throw new Error(`CHAT_TEST_NODES=${nodes} needs CHAT_TEST_WITH_REDIS=1 (nodes meet in Redis)`);
    env.REDIS_PREFIX = `compat-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  }
  const ports = fixedPorts(nodes);
  const started = [];
  try {
    // One after the other: the first creates the database the others open.
    for (let i = 0; i < nodes; i++) {
      started.push(await startProcess(bin, dataDir, ports ? { ...env, PORT: ports[i] } : env));
    }
  } catch (err) {
    for (const node of started) await node.stop().catch(() => {});
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  async function stop() {
    const results = await Promise.allSettled(started.map((node) => node.stop()));
    fs.rmSync(dataDir, { recursive: true, force: true });
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
  return {
    url: started[0].url,
    urls: started.map((node) => node.url),
    stop,
    output: () => started.map((node) => node.output()).join('\n'),
  };
}

/** One server process on `dataDir`; its `stop` fails if it had died on its own. */
async function startProcess(bin, dataDir, env) {
  // Run inside the temp directory: the service reads a `.env` from its working directory or
  // any parent, and a developer's checkout may have one.
  const child = spawn(bin, [], { cwd: dataDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.set(child, dataDir);

  // Kept for failure messages: a test that cannot start the server should say why.
  let output = '';
  const remember = (chunk) => {
    output += chunk;
    if (output.length > 64_000) output = output.slice(-32_000);
  };
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', remember);

  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );

  const ready = new Promise((resolve, reject) => {
    let pending = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not print its listening line within ${READY_TIMEOUT_MS} ms\n${output}`));
    }, READY_TIMEOUT_MS);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      remember(chunk);
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const m = READY_LINE.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited before listening (code ${code}, signal ${signal})\n${output}`));
    });
  });
  const url = await ready;

  let stopped = false;
  async function stop() {
    if (stopped) return;
    stopped = true;
    const crashed = child.exitCode !== null || child.signalCode !== null;
    if (!crashed) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    if (crashed) {
      throw new Error(`server exited during the tests (code ${child.exitCode}, signal ${child.signalCode})\n${output}`);
    }
  }

  return { url, stop, output: () => output };
}

module.exports = { startServer, JWT_SECRET, INTERNAL_SERVICE_TOKEN };
