// ws_client.js - an independent WebSocket client for the e2e tests (Debian's node-ws package):
//   NODE_PATH=/usr/share/nodejs node ws_client.js             driver mode (stdin/stdout)
//   NODE_PATH=/usr/share/nodejs node ws_client.js fanout JSON  fan-out check, prints a summary
//
// Driver mode reads one JSON command per line and writes one JSON event per line:
//   {"op":"open","name":"a","url":"ws://...","headers":{...},"origin":"..."}
//        -> {"ev":"open"} | {"ev":"unexpected","status":N,"body":"..."} | {"ev":"error","message"}
//   {"op":"send","name":"a","text":"..."} or "json":{...}; "binary":true sends a binary frame;
//        "hex" instead of text gives raw payload bytes; "fin":false sends a fragment;
//        "mask":false sends an unmasked frame
//   {"op":"raw","name":"a","hex":"..."}        bytes written to the socket as they are
//   {"op":"ping"|"pause"|"resume"|"terminate","name":"a"}
//   {"op":"close","name":"a","code":N,"reason":"..."}
//   {"op":"exit"}
// Events: {"ev":"message","name","data"} (text), {"ev":"close","name","code","reason"},
//         {"ev":"pong","name"}, {"ev":"ping","name"}, {"ev":"error","name","message"}.
'use strict';
const WebSocket = require('ws');
const http = require('http');
const readline = require('readline');

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function driver() {
  const conns = new Map();
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      out({ ev: 'error', message: 'bad command: ' + e.message });
      return;
    }
    const name = cmd.name || 'a';
    const ws = conns.get(name);
    try {
      switch (cmd.op) {
        case 'open': {
          const opts = { headers: cmd.headers || {}, perMessageDeflate: !!cmd.deflate };
          if (cmd.origin) opts.origin = cmd.origin;
          if (cmd.maxPayload) opts.maxPayload = cmd.maxPayload;
          const w = new WebSocket(cmd.url, opts);
          conns.set(name, w);
          w.on('open', () => out({ ev: 'open', name, extensions: w.extensions }));
          w.on('message', (data, isBinary) =>
            out({ ev: 'message', name, binary: isBinary, data: isBinary ? data.toString('hex') : data.toString() }));
          w.on('close', (code, reason) => out({ ev: 'close', name, code, reason: reason.toString() }));
          w.on('ping', () => out({ ev: 'ping', name }));
          w.on('pong', () => out({ ev: 'pong', name }));
          w.on('error', (e) => out({ ev: 'error', name, message: e.message }));
          w.on('unexpected-response', (req, res) => {
            let body = '';
            res.on('data', (c) => (body += c));
            res.on('end', () => out({ ev: 'unexpected', name, status: res.statusCode, headers: res.headers, body }));
          });
          break;
        }
        case 'send': {
          let data;
          if (cmd.hex !== undefined) data = Buffer.from(cmd.hex, 'hex');
          else if (cmd.json !== undefined) data = JSON.stringify(cmd.json);
          else data = cmd.text;
          const o = { binary: !!cmd.binary, fin: cmd.fin !== false };
          if (cmd.mask === false) o.mask = false;
          ws.send(data, o);
          break;
        }
        case 'raw':
          ws._socket.write(Buffer.from(cmd.hex, 'hex'));
          break;
        case 'ping':
          ws.ping();
          break;
        case 'pause':
          ws.pause();
          break;
        case 'resume':
          ws.resume();
          break;
        case 'terminate':
          ws.terminate();
          break;
        case 'close':
          ws.close(cmd.code, cmd.reason);
          break;
        case 'exit':
          for (const w of conns.values()) w.terminate();
          setTimeout(() => process.exit(0), 20);
          break;
        default:
          out({ ev: 'error', name, message: 'unknown op ' + cmd.op });
      }
    } catch (e) {
      out({ ev: 'error', name, message: 'command failed: ' + e.message });
    }
  });
  rl.on('close', () => {
    for (const w of conns.values()) w.terminate();
    setTimeout(() => process.exit(0), 20);
  });
}

// ---- fan-out: N receivers, one sender, M broadcasts; each receiver must get every broadcast
// exactly once, in order, with seq and stateVersion strictly increasing. ----

function connectClient(url, token, role, scopes, id) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const t = setTimeout(() => reject(new Error('connect timeout ' + id)), 30000);
    ws.once('error', reject);
    const onMsg = (d) => {
      const m = JSON.parse(d.toString());
      if (m.type === 'event' && m.event === 'connect.challenge') {
        ws.send(JSON.stringify({ type: 'req', id: 'c' + id, method: 'connect',
          params: { role, scopes, auth: { token }, device: { id: 'dev-' + id }, client: { id: 'fanout', version: '1' } } }));
      } else if (m.type === 'res' && m.id === 'c' + id) {
        clearTimeout(t);
        ws.off('message', onMsg);
        if (!m.ok) reject(new Error('connect failed: ' + JSON.stringify(m.error)));
        else resolve({ ws, connId: m.payload.server.connId });
      }
    };
    ws.on('message', onMsg);
  });
}

async function fanout(cfg) {
  const { url, token, clients, messages, inflight, via, httpPort } = cfg;
  const started = Date.now();
  const recv = [];
  for (let i = 0; i < clients; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(clients, i + 50); j++) batch.push(connectClient(url, token, 'node', [], j));
    recv.push(...(await Promise.all(batch)));
  }
  const sender = await connectClient(url, token, 'operator', ['operator.write'], 'sender');
  const state = recv.map(() => ({ next: 0, lastSeq: 0, lastVersion: 0, errors: [] }));
  let delivered = 0;
  const doneCount = new Array(messages).fill(0);
  let completed = 0;
  let finish;
  const finished = new Promise((r) => (finish = r));
  let sent = 0;
  let inFlight = 0;
  const sendNext = () => {
    while (inFlight < inflight && sent < messages) {
      const i = sent++;
      inFlight++;
      if (via === 'http') {
        const body = JSON.stringify({ event: 'fan', payload: { i }, role: 'node' });
        const req = http.request({ host: '127.0.0.1', port: httpPort, path: '/v1/ws/broadcast', method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token, 'Content-Length': Buffer.byteLength(body) } },
          (res) => { res.resume(); });
        req.on('error', (e) => state[0].errors.push('http: ' + e.message));
        req.end(body);
      } else {
        sender.ws.send(JSON.stringify({ type: 'req', id: 'b' + i, method: 'fan.broadcast', params: { i } }));
      }
    }
  };
  recv.forEach((c, k) => {
    c.ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.type !== 'event' || m.event !== 'fan') return;
      const s = state[k];
      if (m.payload.i !== s.next) s.errors.push(`client ${k}: got ${m.payload.i}, want ${s.next}`);
      if (!(m.seq > s.lastSeq)) s.errors.push(`client ${k}: seq ${m.seq} after ${s.lastSeq}`);
      if (!(m.stateVersion > s.lastVersion)) s.errors.push(`client ${k}: stateVersion ${m.stateVersion} after ${s.lastVersion}`);
      s.lastSeq = m.seq;
      s.lastVersion = m.stateVersion;
      s.next = m.payload.i + 1;
      delivered++;
      const i = m.payload.i;
      if (i >= 0 && i < messages && ++doneCount[i] === clients) {
        completed++;
        inFlight--;
        if (completed === messages) finish();
        else sendNext();
      }
    });
    c.ws.on('close', (code) => state[k].errors.push(`client ${k} closed ${code}`));
  });
  const t0 = Date.now();
  sendNext();
  const timeout = setTimeout(() => finish('timeout'), cfg.timeoutMs || 60000);
  const why = await finished;
  clearTimeout(timeout);
  const secs = (Date.now() - t0) / 1000;
  const errors = [];
  state.forEach((s, k) => {
    errors.push(...s.errors.slice(0, 3));
    if (s.next !== messages) errors.push(`client ${k}: got ${s.next} of ${messages}`);
  });
  for (const c of recv) c.ws.removeAllListeners('close');
  for (const c of recv) c.ws.terminate();
  sender.ws.terminate();
  out({ ok: errors.length === 0 && why !== 'timeout', timeout: why === 'timeout', delivered, expected: clients * messages,
    seconds: secs, setup_seconds: (t0 - started) / 1000, errors: errors.slice(0, 20) });
  setTimeout(() => process.exit(0), 50);
}

if (process.argv[2] === 'fanout') {
  fanout(JSON.parse(process.argv[3])).catch((e) => {
    out({ ok: false, errors: [String(e && e.stack || e)] });
    process.exit(1);
  });
} else {
  driver();
}
