// node_server.js - the comparison server of bench/ws: Node.js + Debian's node-ws doing the same
// work as chatgw for the fan-out benchmark: the challenge event, the connect handshake (token
// check, hello-ok), `res` answers, and bench.broadcast -> one `event` per receiver (role node)
// with a per-connection seq in front of a payload encoded once, the shared stateVersion, and the
// same slow-consumer rule (more than 1 MiB buffered: dropped). Idiomatic ws code, no tricks.
//
//   NODE_PATH=/usr/share/nodejs node node_server.js PORT TOKEN
'use strict';
const WebSocket = require('ws');
const crypto = require('crypto');

const port = Number(process.argv[2] || 18788);
const token = process.argv[3] || 'bench-token';
const MAX_BUFFERED = 1 << 20;

const wss = new WebSocket.Server({ host: '127.0.0.1', port, path: '/ws', perMessageDeflate: false,
  maxPayload: 1 << 20 });
const nodes = new Set();
let stateVersion = 0;
let nextId = 1;

wss.on('connection', (ws) => {
  ws.connected = false;
  ws.seq = 0;
  ws.id = 'n-' + nextId++;
  ws.send(JSON.stringify({ type: 'event', event: 'connect.challenge',
    payload: { nonce: crypto.randomBytes(16).toString('hex'), ts: Date.now() } }));
  ws.on('message', (data) => {
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      ws.send(JSON.stringify({ type: 'res', id: null, ok: false, error: { code: 'invalid_request', message: 'not JSON' } }));
      return;
    }
    if (!ws.connected) {
      const p = m.params || {};
      if (m.method !== 'connect' || !p.auth || p.auth.token !== token) {
        ws.send(JSON.stringify({ type: 'res', id: m.id, ok: false, error: { code: 'unauthorized', message: 'invalid token' } }));
        ws.close(1008, 'unauthorized');
        return;
      }
      ws.connected = true;
      ws.role = p.role;
      if (ws.role === 'node') nodes.add(ws);
      ws.send(JSON.stringify({ type: 'res', id: m.id, ok: true, payload: { type: 'hello-ok',
        server: { version: 'node-ws', connId: ws.id }, auth: { role: ws.role, scopes: [] },
        policy: { maxPayload: 1 << 20, maxBufferedBytes: MAX_BUFFERED, tickIntervalMs: 30000 } } }));
      return;
    }
    if (m.method === 'bench.broadcast') {
      const shared = ',"event":"bench","stateVersion":' + (++stateVersion) + ',"payload":' +
        JSON.stringify(m.params) + '}';
      for (const c of nodes) {
        if (c.readyState !== WebSocket.OPEN) continue;
        if (c.bufferedAmount > MAX_BUFFERED) {
          c.terminate();
          continue;
        }
        c.send('{"type":"event","seq":' + (++c.seq) + shared);
      }
      ws.send('{"type":"res","id":' + JSON.stringify(m.id) + ',"ok":true}');
      return;
    }
    ws.send(JSON.stringify({ type: 'res', id: m.id, ok: false, error: { code: 'unknown_method', message: 'unknown method' } }));
  });
  ws.on('close', () => nodes.delete(ws));
});
wss.on('listening', () => process.stdout.write('listening ' + port + '\n'));
process.on('SIGTERM', () => {
  for (const c of wss.clients) c.terminate();
  wss.close(() => process.exit(0));
});
