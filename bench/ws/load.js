// load.js - WebSocket fan-out load client (node + Debian's node-ws), run by bench/ws/run.sh.
//
//   NODE_PATH=/usr/share/nodejs node load.js '{"url":..., "token":..., "pid": SERVER_PID, ...}'
//
// Speaks the chatgw WebSocket protocol (challenge, connect, req/res, events) so the same client
// drives chatgw and bench/ws/node_server.js. N receivers (role node) and one sender (role
// operator) connect; the sender asks the server to broadcast M messages (method
// bench.broadcast), keeping at most K broadcasts in flight (a broadcast is in flight until every
// receiver has it). Each payload carries the send time; receivers (same process, same clock)
// record the delivery latency. The server's CPU time (/proc/PID/stat) and RSS (/proc/PID/status)
// are read around the phases. Prints one JSON line of results.
//
// mode "fanout": idle RSS, RSS with N connected, then warm-up and the measured run.
// mode "idle":   only idle RSS and RSS with N connected (for the 10,000-connection memory row).
//
// Several servers (bench/cluster: cluster nodes on one Redis): "urls" and "pids" arrays instead
// of "url" and "pid". Receivers are spread over the urls round robin, the sender is on the first,
// and CPU and RSS are the sums over every pid (add Redis's pid to count its CPU too).
'use strict';
const WebSocket = require('ws');
const fs = require('fs');

const cfg = Object.assign({ clients: 1000, messages: 2000, inflight: 32, payload: 64, warmup: 200,
  mode: 'fanout', clkTck: 100, connectBatch: 250, timeoutMs: 120000 }, JSON.parse(process.argv[2] || '{}'));

const urls = cfg.urls || [cfg.url];
const pids = cfg.pids || [cfg.pid];

function procStat(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { cpuUs: (Number(f[11]) + Number(f[12])) * 1e6 / cfg.clkTck };
}

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

const cpuAll = () => pids.reduce((a, p) => a + procStat(p).cpuUs, 0);
const rssAll = () => pids.reduce((a, p) => a + rssKiB(p), 0);

function connect(role, n) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(urls[n % urls.length], { perMessageDeflate: false, skipUTF8Validation: true });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('connect timeout')); }, 30000);
    ws.once('error', (e) => { clearTimeout(timer); reject(e); });
    ws.once('unexpected-response', (req, res) => { clearTimeout(timer); reject(new Error('HTTP ' + res.statusCode)); });
    const onMsg = (d) => {
      const m = JSON.parse(d);
      if (m.type === 'event' && m.event === 'connect.challenge') {
        ws.send(JSON.stringify({ type: 'req', id: 'c', method: 'connect',
          params: { role, scopes: [], auth: { token: cfg.token }, device: { id: role + '-' + n } } }));
      } else if (m.type === 'res' && m.id === 'c') {
        clearTimeout(timer);
        ws.off('message', onMsg);
        if (m.ok) resolve(ws); else reject(new Error('connect refused: ' + JSON.stringify(m.error)));
      }
    };
    ws.on('message', onMsg);
  });
}

async function connectAll(n) {
  const out = [];
  for (let i = 0; i < n; i += cfg.connectBatch) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + cfg.connectBatch); j++) batch.push(connect('node', j));
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

function pct(sorted, p) {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function main() {
  const res = { server: cfg.server, clients: cfg.clients, servers: urls.length };
  await sleep(300);
  res.rss_idle_kib = rssAll();
  const t0 = Date.now();
  const recv = await connectAll(cfg.clients);
  res.connect_seconds = (Date.now() - t0) / 1000;
  await sleep(1500);
  res.rss_connected_kib = rssAll();
  res.rss_per_conn_bytes = Math.round((res.rss_connected_kib - res.rss_idle_kib) * 1024 / cfg.clients);
  if (cfg.mode === 'idle') return finish(res, recv, null);

  const sender = await connect('operator', 0);
  const N = cfg.clients;
  const pad = 'x'.repeat(Math.max(0, cfg.payload - 40));
  // per-broadcast count of receivers that have it; latency samples (every delivery, or sampled)
  let counts = null, lat = null, nlat = 0;
  let sent = 0, completed = 0, inFlight = 0, total = 0, measuring = false, done = null, errors = 0;
  const sendNext = () => {
    while (inFlight < cfg.inflight && sent < total) {
      const i = sent++;
      inFlight++;
      sender.send('{"type":"req","id":' + i + ',"method":"bench.broadcast","params":{"i":' + i +
        ',"t":' + nowUs() + ',"pad":"' + pad + '"}}');
    }
  };
  const onDelivery = (buf) => {
    // cheap field extraction: no JSON.parse per delivery (the client must not be the bottleneck)
    const s = buf.toString('latin1');
    const a = s.indexOf('"i":');
    if (a < 0) return; // not a bench event (e.g. a ping reply)
    const i = parseInt(s.slice(a + 4, a + 24), 10);
    const b = s.indexOf('"t":'); // the server's JSON encoder may order keys either way
    const t = parseInt(s.slice(b + 4, b + 24), 10);
    if (measuring) {
      if (nlat < lat.length) lat[nlat] = nowUs() - t;
      nlat++;
    }
    if (++counts[i] === N) {
      completed++;
      inFlight--;
      if (completed === total) done();
      else sendNext();
    }
  };
  for (const ws of recv) {
    ws.on('message', onDelivery);
    ws.on('close', () => { errors++; });
  }
  sender.on('message', (d) => {
    if (d.length > 20 && d.indexOf('"ok":false') >= 0) errors++;
  });

  const run = async (m, measure) => {
    counts = new Uint32Array(m);
    sent = completed = inFlight = 0;
    total = m;
    measuring = measure;
    const finished = new Promise((r) => (done = r));
    const timer = setTimeout(() => done('timeout'), cfg.timeoutMs);
    const cpu0 = cpuAll();
    const w0 = process.hrtime.bigint();
    sendNext();
    const why = await finished;
    clearTimeout(timer);
    const secs = Number(process.hrtime.bigint() - w0) / 1e9;
    const cpu1 = cpuAll();
    return { why, secs, cpuUs: cpu1 - cpu0 };
  };
  await run(Math.min(cfg.warmup, cfg.messages), false);
  const deliveries = N * cfg.messages;
  lat = new Float64Array(Math.min(deliveries, 20000000));
  nlat = 0;
  const r = await run(cfg.messages, true);
  res.timeout = r.why === 'timeout';
  res.messages = cfg.messages;
  res.inflight = cfg.inflight;
  res.payload_bytes = cfg.payload;
  res.deliveries = deliveries;
  res.seconds = r.secs;
  res.deliveries_per_s = Math.round(deliveries / r.secs);
  res.server_cpu_us_per_delivery = r.cpuUs / deliveries;
  res.server_cpu_seconds = r.cpuUs / 1e6;
  const sorted = Array.from(lat.subarray(0, Math.min(nlat, lat.length))).sort((x, y) => x - y);
  res.latency_p50_ms = pct(sorted, 0.5) / 1000;
  res.latency_p99_ms = pct(sorted, 0.99) / 1000;
  res.rss_after_run_kib = rssAll();
  res.errors = errors;
  return finish(res, recv, sender);
}

function finish(res, recv, sender) {
  for (const ws of recv) { ws.removeAllListeners('close'); ws.terminate(); }
  if (sender) sender.terminate();
  process.stdout.write(JSON.stringify(res) + '\n');
  setTimeout(() => process.exit(0), 100);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ server: cfg.server, error: String(e && e.message || e) }) + '\n');
  process.exit(1);
});
