'use strict';
// A second, independent client stack: python-socketio's client (python/client_flow.py), to
// show the server speaks the protocol rather than one library's habits. The python clients
// and this file's socket.io-client share a room and talk to each other; one python client
// leaves, misses messages and catches up through `conversation:join` with `lastMessageId`.
//
// Interpreter: $COMPAT_PYTHON, else compat-tests/.venv/bin/python when it exists, else python3
// (which then needs python/requirements.txt installed).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { useServer, userToken, emitAck } = require('../helpers/harness');

const ctx = useServer();
const COMPANY = 'company-python';
const SCRIPT = path.join(__dirname, '..', 'python', 'client_flow.py');
const RUN_TIMEOUT_MS = 30_000;

function pythonInterpreter() {
  if (process.env.COMPAT_PYTHON) return process.env.COMPAT_PYTHON;
  const venv = path.join(__dirname, '..', '.venv', 'bin', 'python');
  return fs.existsSync(venv) ? venv : 'python3';
}

/** Runs the script; calls `onLine` for each JSON line it prints; resolves with all of them. */
function runPython(args, onLine) {
  return new Promise((resolve, reject) => {
    const child = spawn(pythonInterpreter(), [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = [];
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`python client did not finish within ${RUN_TIMEOUT_MS} ms\n${stderr}`));
    }, RUN_TIMEOUT_MS);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      let nl;
      while ((nl = stdout.indexOf('\n')) >= 0) {
        const line = stdout.slice(0, nl).trim();
        stdout = stdout.slice(nl + 1);
        if (!line) continue;
        const parsed = JSON.parse(line);
        lines.push(parsed);
        Promise.resolve(onLine(parsed)).catch((err) => {
          child.kill('SIGKILL');
          reject(err);
        });
      }
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${pythonInterpreter()}: ${err.message}`));
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(lines);
      else reject(new Error(`python client exited with ${code}\n${stderr}`));
    });
  });
}

test('python-socketio clients (websocket and polling) interoperate with socket.io-client', async () => {
  const nodeToken = userToken('node-user', COMPANY);
  const conv = await ctx.createConversation(nodeToken);
  const node = await ctx.joined(conv.id, { token: nodeToken });

  const sentWhileAway = [];
  const lines = await runPython(
    [
      '--url', ctx.url,
      '--token-a', userToken('py-ws', COMPANY),
      '--token-b', userToken('py-polling', COMPANY),
      '--conversation', conv.id,
    ],
    async (line) => {
      if (line.step === 'away') {
        // Sent while the websocket client is gone; it must get them when it joins again.
        for (let i = 1; i <= 3; i++) {
          const ack = await emitAck(node, 'message:send', { conversationId: conv.id, content: `missed from node ${i}` });
          assert.equal(ack.ok, true);
          sentWhileAway.push(ack.message.id);
        }
        return;
      }
      if (line.step !== 'sent') return;
      // The node client sees the python message, then answers it.
      const fresh = await node.rec.waitFor('message:new', (e) => e.message.id === line.messageId);
      assert.equal(fresh.message.content, 'hello from python');
      assert.equal(fresh.message.sender_id, 'py-ws');
      const ack = await emitAck(node, 'message:send', { conversationId: conv.id, content: 'hello from node' });
      assert.equal(ack.ok, true);
    },
  );

  const done = lines.find((l) => l.step === 'done');
  assert.ok(done, `no final line from the python client: ${JSON.stringify(lines)}`);
  assert.equal(done.joined.id, conv.id);
  assert.equal(done.joined.channel, 'chat');
  assert.deepEqual(done.userJoined, { conversationId: conv.id, userId: 'py-polling' });
  assert.equal(done.message._id, done.message.id);
  assert.deepEqual(done.typing, { conversationId: conv.id, userId: 'py-polling', isTyping: true });
  assert.equal(done.reply.sender_id, 'node-user');
  assert.equal(done.reply._id, done.reply.id);
  assert.deepEqual(done.refusal, { message: 'Invalid or expired token' });
  assert.deepEqual(done.userLeft, { conversationId: conv.id, userId: 'py-polling' });
  // Caught up through conversation:join with lastMessageId: every missed message, once, in order.
  assert.deepEqual(
    done.catchUp.missed.map((m) => m.content),
    ['missed from node 1', 'missed from node 2', 'missed from node 3', 'missed from python 1', 'missed from python 2'],
  );
  assert.deepEqual(done.catchUp.missed.slice(0, 3).map((m) => m.id), sentWhileAway);
  assert.equal(done.catchUp.hasMore, false);

  // The node side saw the python clients come and go, and the thread they created.
  await node.rec.waitFor('user:joined', (j) => j.userId === 'py-ws');
  await node.rec.waitFor('user:joined', (j) => j.userId === 'py-polling');
  await node.rec.waitFor('user:typing', (t) => t.userId === 'py-polling');
  await node.rec.waitFor('thread:created', (t) => t.thread.title === 'From python');
  await node.rec.waitFor('user:left', (l) => l.userId === 'py-polling');
});
