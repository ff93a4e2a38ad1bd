// The admin console. Everything it shows comes from the service's own endpoints, called with
// the admin's token: /metrics (polled every second; messages per second is the difference of
// chat_messages_sent_total between two polls), /health, and /admin/api/errors. The playground
// is a Socket.IO client like any other, with the token it is given.
'use strict';

(() => {
  const POLL_MS = 1000;
  // Each /health call pings the store: often enough for a person watching, no more.
  const HEALTH_POLL_MS = 5000;
  const ERRORS_POLL_MS = 5000;
  const WINDOW_MS = 5 * 60 * 1000;
  const MAX_LOGGED_EVENTS = 200;
  const TOKEN_KEY = 'chat-admin-token';

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const svgEl = (tag, attrs = {}, text) => {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const clock = (date = new Date()) => date.toTimeString().slice(0, 8);

  class Refused extends Error {}

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    running: false,
    timers: [],
    previous: null, // { t, total } of the last /metrics poll
    rates: [], // { t, rate }, the last WINDOW_MS
  };

  async function call(path) {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` }, cache: 'no-store' });
    if (res.status === 401) {
      let message = 'The token was refused';
      try {
        message = (await res.json()).error || message;
      } catch (_) {
        // not JSON: keep the generic text
      }
      throw new Refused(message);
    }
    return res;
  }

  // --- Sign in -------------------------------------------------------------------------

  async function signIn(token) {
    state.token = token;
    $('sign-in-error').textContent = '';
    try {
      const res = await call('/admin/api/errors');
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      renderErrors(await res.json());
    } catch (err) {
      signOut(err instanceof Refused ? err.message : `Cannot reach the service: ${err.message}`);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $('sign-in').hidden = true;
    $('console').hidden = false;
    $('sign-out').hidden = false;
    start();
  }

  function signOut(reason = '') {
    stop();
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = '';
    $('sign-in').hidden = false;
    $('console').hidden = true;
    $('sign-out').hidden = true;
    $('sign-in-error').textContent = reason;
  }

  function start() {
    if (state.running) return;
    state.running = true;
    state.previous = null;
    state.rates = [];
    repeat(pollMetrics, POLL_MS);
    repeat(pollHealth, HEALTH_POLL_MS);
    repeat(pollErrors, ERRORS_POLL_MS);
  }

  function stop() {
    state.running = false;
    state.timers.forEach(clearTimeout);
    state.timers = [];
  }

  /** Runs `task` now and again `every` ms after each run ends, until `stop`. */
  function repeat(task, every) {
    const run = async () => {
      if (!state.running) return;
      try {
        await task();
      } catch (err) {
        if (err instanceof Refused) return signOut(`${err.message}: sign in again`);
      }
      if (state.running) state.timers.push(setTimeout(run, every));
    };
    run();
  }

  // --- Metrics -------------------------------------------------------------------------

  /** Prometheus text format → [{ name, labels, value }]. */
  function parseMetrics(text) {
    const samples = [];
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const space = line.lastIndexOf(' ');
      const series = line.slice(0, space);
      const brace = series.indexOf('{');
      const labels = {};
      if (brace >= 0) {
        for (const m of series.slice(brace + 1, -1).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2];
      }
      samples.push({ name: brace < 0 ? series : series.slice(0, brace), labels, value: Number(line.slice(space + 1)) });
    }
    return samples;
  }

  const total = (samples, name, where = () => true) =>
    samples.filter((s) => s.name === name && where(s.labels)).reduce((sum, s) => sum + s.value, 0);

  async function pollMetrics() {
    const res = await call('/metrics');
    if (!res.ok) throw new Error(`/metrics: HTTP ${res.status}`);
    const samples = parseMetrics(await res.text());
    const t = performance.now();

    const websocket = total(samples, 'chat_connections', (l) => l.transport === 'websocket');
    const polling = total(samples, 'chat_connections', (l) => l.transport === 'polling');
    $('connections').textContent = websocket + polling;
    $('transports').textContent = `${websocket} websocket · ${polling} polling`;
    $('rooms').textContent = total(samples, 'chat_rooms');
    $('pending').textContent = total(samples, 'chat_socket_events_pending');
    $('refusals').textContent =
      `${total(samples, 'chat_busy_refusals_total')} · ${total(samples, 'chat_rate_limit_refusals_total')}`;
    $('slow').textContent = total(samples, 'chat_slow_consumer_disconnects_total');
    const build = samples.find((s) => s.name === 'chat_build_info');
    if (build) $('version').textContent = `version ${build.labels.version}`;

    const messages = total(samples, 'chat_messages_sent_total');
    $('messages-total').textContent = `${messages} since start`;
    if (state.previous) {
      const seconds = (t - state.previous.t) / 1000;
      // A smaller total means the node restarted: no rate across that.
      const rate = messages >= state.previous.total && seconds > 0 ? (messages - state.previous.total) / seconds : 0;
      state.rates.push({ t, rate });
      while (state.rates.length && state.rates[0].t < t - WINDOW_MS) state.rates.shift();
      $('rate').textContent = rate.toFixed(rate < 10 ? 1 : 0);
    }
    state.previous = { t, total: messages };
    drawChart(t);
  }

  /** A round number at least `v`: 1, 2, 5 times a power of ten. */
  function niceCeiling(v) {
    const power = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 5, 10].map((m) => m * power).find((n) => n >= v);
  }

  function drawChart(now) {
    const svg = $('chart');
    const [width, height] = [960, 220];
    const pad = { left: 44, right: 12, top: 12, bottom: 24 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const highest = Math.max(0, ...state.rates.map((p) => p.rate));
    const top = niceCeiling(Math.max(1, highest));
    const x = (t) => pad.left + plotW * (1 - (now - t) / WINDOW_MS);
    const y = (rate) => pad.top + plotH * (1 - rate / top);

    svg.replaceChildren();
    for (const fraction of [0, 0.5, 1]) {
      const value = top * fraction;
      svg.append(svgEl('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value) }));
      svg.append(svgEl('text', { class: 'axis', x: pad.left - 6, y: y(value) + 4, 'text-anchor': 'end' }, String(value)));
    }
    for (const minutes of [5, 4, 3, 2, 1, 0]) {
      const label = minutes === 0 ? 'now' : `-${minutes} min`;
      const anchor = minutes === 5 ? 'start' : minutes === 0 ? 'end' : 'middle';
      svg.append(svgEl('text', { class: 'axis', x: x(now - minutes * 60000), y: height - 6, 'text-anchor': anchor }, label));
    }
    if (state.rates.length > 1) {
      const points = state.rates.map((p) => `${x(p.t).toFixed(1)},${y(p.rate).toFixed(1)}`);
      const first = state.rates[0];
      const area = `${x(first.t).toFixed(1)},${y(0)} ${points.join(' ')} ${x(now).toFixed(1)},${y(0)}`;
      svg.append(svgEl('polygon', { class: 'area', points: area }));
      svg.append(svgEl('polyline', { class: 'series', points: points.join(' ') }));
    }
    // For whoever checks the page (and its tests): what is drawn.
    svg.dataset.points = String(state.rates.length);
    svg.dataset.highest = String(highest);
  }

  // --- Health and errors ---------------------------------------------------------------

  async function pollHealth() {
    // /health answers 503 when the store is down: that is a result to show, not a failure.
    const res = await call('/health');
    const health = await res.json();
    const rows = $('health').tBodies[0];
    rows.replaceChildren();
    // Redis and the agent service are listed only when configured.
    const absent = { status: 'not configured' };
    const checks = { store: absent, redis: absent, agent: absent, ...health.checks };
    for (const [name, check] of Object.entries(checks)) {
      const row = el('tr');
      row.append(el('td', {}, name));
      const kind = check.status === 'ok' ? 'status-ok' : check.status === 'not configured' ? 'muted' : 'status-bad';
      row.append(el('td', { class: kind }, check.status));
      const details = Object.entries(check)
        .filter(([k]) => k !== 'status')
        .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`)
        .join(' · ');
      row.append(el('td', { class: 'muted' }, details));
      rows.append(row);
    }
    $('health-status').textContent = `overall: ${health.status}, at ${clock()}`;
  }

  async function pollErrors() {
    const res = await call('/admin/api/errors');
    if (!res.ok) throw new Error(`/admin/api/errors: HTTP ${res.status}`);
    renderErrors(await res.json());
  }

  function renderErrors({ errors }) {
    const list = $('errors');
    list.replaceChildren(
      ...errors.map((e) => {
        const item = el('li', { class: e.level });
        item.append(el('span', { class: 'when' }, e.at.replace('T', ' ').replace('Z', '')));
        item.append(el('span', { class: 'name' }, `${e.level} ${e.target}`));
        const fields = Object.keys(e.fields).length ? ` ${JSON.stringify(e.fields)}` : '';
        item.append(document.createTextNode(e.message + fields));
        return item;
      }),
    );
    $('errors-empty').hidden = errors.length > 0;
  }

  // --- Playground ----------------------------------------------------------------------

  let socket = null;

  function logEvent(direction, name, args) {
    const list = $('pg-events');
    const item = el('li', { class: direction, 'data-event': name });
    item.append(el('span', { class: 'when' }, clock()));
    item.append(el('span', { class: 'name' }, `${direction === 'outgoing' ? '→' : '←'} ${name}`));
    let text = args.map((a) => JSON.stringify(a)).join(', ');
    if (text.length > 2000) text = `${text.slice(0, 2000)}…`;
    item.append(document.createTextNode(text));
    list.prepend(item);
    while (list.children.length > MAX_LOGGED_EVENTS) list.lastChild.remove();
  }

  function setConnected(connected, status) {
    $('pg-status').textContent = status;
    $('pg-connect-button').disabled = connected;
    $('pg-disconnect').disabled = !connected;
    for (const form of ['pg-join', 'pg-send']) $(form).querySelector('button').disabled = !connected;
  }

  function connect(token) {
    if (socket) socket.disconnect();
    setConnected(true, 'connecting…');
    socket = window.io({ auth: { token }, transports: ['websocket', 'polling'] });
    socket.on('connect', () => {
      setConnected(true, `connected (${socket.io.engine.transport.name}), socket ${socket.id}`);
      logEvent('incoming', 'connect', []);
    });
    socket.on('connect_error', (err) => {
      logEvent('incoming', 'connect_error', [err.message]);
      if (!socket.active) setConnected(false, `refused: ${err.message}`);
    });
    socket.on('disconnect', (reason) => {
      logEvent('incoming', 'disconnect', [reason]);
      if (!socket.active) setConnected(false, `disconnected (${reason})`);
    });
    socket.onAny((name, ...args) => logEvent('incoming', name, args));
  }

  function emit(name, payload) {
    logEvent('outgoing', name, [payload]);
    socket.emit(name, payload, (ack) => logEvent('incoming', `ack ${name}`, [ack]));
  }

  // --- Wiring --------------------------------------------------------------------------

  $('sign-in-form').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn($('admin-token').value.trim());
  });
  $('sign-out').addEventListener('click', () => {
    if (socket) socket.disconnect();
    signOut();
  });
  $('pg-connect').addEventListener('submit', (e) => {
    e.preventDefault();
    connect($('pg-token').value.trim() || state.token);
  });
  $('pg-disconnect').addEventListener('click', () => socket && socket.disconnect());
  $('pg-join').addEventListener('submit', (e) => {
    e.preventDefault();
    emit('conversation:join', $('pg-conversation').value.trim());
  });
  $('pg-send').addEventListener('submit', (e) => {
    e.preventDefault();
    const content = $('pg-message').value;
    emit('message:send', { conversationId: $('pg-conversation').value.trim(), content });
    $('pg-message').value = '';
  });

  if (state.token) signIn(state.token);
})();
