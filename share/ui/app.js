// The dashboard (README.md, "The dashboard"). Plain JavaScript, no build.
// The writers' URLs come from the page's query: ?user=<user-service URL>
// &order=<order-service URL>; without them, this host on the default
// ports 8081 and 8082. The invoice service is this page's own origin.
'use strict';

const FEED_MAX = 50;            // events kept in the feed
const METRICS_PERIOD_MS = 2000; // how often the pipeline figures refresh

const query = new URLSearchParams(location.search);
const here = `${location.protocol}//${location.hostname}`;
const userBase = query.get('user') || `${here}:8081`;
const orderBase = query.get('order') || `${here}:8082`;
const invoiceBase = location.origin;

const $ = (id) => document.getElementById(id);
let watchedUser = null;

function say(text, isError) {
  $('message').textContent = text;
  $('message').className = isError ? 'error' : '';
}

async function post(base, path, body) {
  const resp = await fetch(base + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const msg = data && data.error ? data.error.message : resp.statusText;
    throw new Error(`${resp.status}: ${msg}`);
  }
  return data;
}

function fields(form) {
  const out = {};
  for (const [k, v] of new FormData(form)) if (v !== '') out[k] = v;
  return out;
}

function watch(userId) {
  watchedUser = userId;
  $('watched-user').textContent = String(userId);
  for (const f of ['account-form', 'order-form']) $(f).elements.user_id.value = userId;
  refreshInvoices();
}

$('user-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const user = await post(userBase, '/system-api/users', fields(e.target));
    say(`user ${user.id} created`);
    watch(user.id);
  } catch (err) { say(`user: ${err.message}`, true); }
});

$('account-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const body = fields(e.target);
  body.user_id = Number(body.user_id);
  try {
    const account = await post(userBase, '/system-api/accounts', body);
    say(`account ${account.id} created`);
  } catch (err) { say(`account: ${err.message}`, true); }
});

$('order-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const body = fields(e.target);
  body.user_id = Number(body.user_id);
  body.amount = Number(body.amount);
  try {
    const order = await post(orderBase, '/order-service/orders', body);
    say(`order ${order.id} created`);
    if (watchedUser !== body.user_id) watch(body.user_id);
  } catch (err) { say(`order: ${err.message}`, true); }
});

function money(v) {
  return typeof v === 'number' ? v.toFixed(2) : String(v);
}

async function refreshInvoices() {
  if (watchedUser === null) return;
  const user = watchedUser;
  const resp = await fetch(`${invoiceBase}/invoice-service/invoices?user_id=${user}`);
  if (!resp.ok || user !== watchedUser) return;
  const rows = await resp.json();
  const body = document.querySelector('#invoices tbody');
  body.replaceChildren(...rows.map((inv) => {
    const tr = document.createElement('tr');
    tr.dataset.invoiceId = inv.id;
    const cells = [inv.id, `${inv.year}-${String(inv.month).padStart(2, '0')}`,
      inv.name || '', inv.order_count, money(inv.total)];
    cells.forEach((c, i) => {
      const td = document.createElement('td');
      td.textContent = String(c);
      if (i === 4) td.className = 'total';
      tr.appendChild(td);
    });
    return tr;
  }));
}

function showEvent(ev) {
  const li = document.createElement('li');
  li.className = ev.type;
  const ids = ['user_id', 'account_id', 'order_id', 'amount']
    .filter((k) => k in ev).map((k) => `${k}=${ev[k]}`).join(' ');
  li.textContent = `${ev.applied_at.slice(11, 23)} ${ev.type} ${ids}`;
  const feed = $('feed');
  feed.prepend(li);
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

function connect() {
  const source = new EventSource(`${invoiceBase}/invoice-service/stream`);
  source.onopen = () => { $('stream-state').textContent = 'live'; $('stream-state').className = 'state live'; };
  source.onerror = () => { $('stream-state').textContent = 'reconnecting…'; $('stream-state').className = 'state'; };
  source.onmessage = (msg) => {
    const ev = JSON.parse(msg.data);
    showEvent(ev);
    if (ev.user_id === watchedUser) refreshInvoices();
  };
}

// Prometheus text: the sum of every sample of a metric (all label sets).
function metric(text, name) {
  let sum = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m && m[1] === name) sum = (sum || 0) + Number(m[3]);
  }
  return sum;
}

async function metricsOf(base) {
  try {
    const resp = await fetch(base + '/metrics');
    return resp.ok ? await resp.text() : '';
  } catch (err) { return ''; }
}

let lastApplied = null;
let lastAt = 0;
async function refreshMetrics() {
  const [inv, usr, ord] = await Promise.all([invoiceBase, userBase, orderBase].map(metricsOf));
  const now = performance.now();
  const applied = metric(inv, 'events_total');
  if (applied !== null && lastApplied !== null && now > lastAt) {
    $('m-rate').textContent = ((applied - lastApplied) * 1000 / (now - lastAt)).toFixed(1);
  }
  if (applied !== null) { lastApplied = applied; lastAt = now; }
  const oldest = metric(inv, 'consumer_oldest_unapplied_seconds');
  $('m-lag').textContent = oldest === null ? '–' : oldest.toFixed(1);
  const pending = [usr, ord].map((t) => metric(t, 'outbox_pending'));
  $('m-outbox').textContent = pending.every((p) => p === null) ? '–' : String(pending.reduce((a, b) => a + (b || 0), 0));
  $('m-dead').textContent = String(deadLetters(inv));
}

// Messages dead-lettered since start: events_total{outcome="dead_lettered"}.
function deadLetters(text) {
  let sum = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('events_total{') && line.includes('outcome="dead_lettered"')) {
      sum = (sum || 0) + Number(line.trim().split(/\s+/).pop());
    }
  }
  return sum === null ? 0 : sum;
}

connect();
refreshMetrics();
setInterval(refreshMetrics, METRICS_PERIOD_MS);
