// The fake Feishu open platform of the Feishu benchmark (limits off): the tenant token, the bot
// info, and message sends (POST /open-apis/im/v1/messages?receive_id_type=..., and
// .../messages/:id/reply), each answered at once and counted when it carries the token
// "t-bench" and a JSON-string content with a text. POST /control/push?n=N&url=URL&conc=C pushes
// N v2 im.message.receive_v1 events ("/echo N" from 200 p2p chats, plain: no encrypt key) to the
// gateway's event URL (127.0.0.1 only) over C keep-alive connections (default 32); it answers at
// once, the push goes on. GET /control/stats -> {"sent", "pushed", "push_errors", "pushing",
// "bad_requests", "duplicate_uuids"}: pushed counts the events the gateway answered 200,
// push_errors the others (any other status, a connection error, a 30 s timeout). Keep-alive.
// Prints "listening PORT" when ready. Usage: node fake_feishu.js [port]
"use strict";
const http = require("http");

const TOKEN = "t-bench", APP_ID = "cli_bench", APP_SECRET = "bench-secret", VT = "bench-vt";
let sent = 0, pushed = 0, pushErrors = 0, pushing = 0, bad = 0, dupUuids = 0, nextId = 1;
const uuids = new Set();
const unknown = new Set(); // paths answered 404, logged once each
const errorsSeen = new Map(); // push error -> count, logged once each

function reply(res, obj, status) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status || 200, { "Content-Type": "application/json; charset=utf-8", "Content-Length": body.length });
  res.end(body);
}

function refuse(res, why, code, status) {
  bad++;
  if (bad <= 20) console.log("bad request: " + why);
  return reply(res, { code: code || 99992402, msg: why }, status || 400);
}

// ---- the events pushed to the gateway ----

function event(n) {
  const chat = "oc_bench" + (n % 200), user = "ou_user" + (n % 200), now = Date.now();
  const text = "/echo " + n;
  return JSON.stringify({
    schema: "2.0",
    header: { event_id: "ev_bench_" + n, event_type: "im.message.receive_v1", create_time: String(now),
              token: VT, app_id: APP_ID, tenant_key: "tk_bench" },
    event: {
      sender: { sender_id: { open_id: user, user_id: "u" + (n % 200), union_id: "on_user" + (n % 200) },
                sender_type: "user", tenant_key: "tk_bench" },
      message: { message_id: "om_in" + n, root_id: "", parent_id: "", create_time: String(now),
                 chat_id: chat, chat_type: "p2p", message_type: "text",
                 content: JSON.stringify({ text }), mentions: [] },
    },
  });
}

function pushError(why) {
  pushErrors++;
  const c = (errorsSeen.get(why) || 0) + 1;
  errorsSeen.set(why, c);
  if (c === 1) console.log("push error: " + why);
}

function postEvent(agent, target, body) {
  return new Promise((resolve) => {
    const buf = Buffer.from(body);
    const req = http.request({ agent, host: target.hostname, port: target.port, method: "POST",
      path: target.pathname + target.search,
      headers: { "Content-Type": "application/json; charset=utf-8", "Content-Length": buf.length,
                 "User-Agent": "Go-http-client/1.1" } }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        if (res.statusCode === 200) pushed++;
        else pushError("HTTP " + res.statusCode + " " + Buffer.concat(chunks).toString().slice(0, 200));
        resolve();
      });
      res.on("error", (e) => { pushError(String(e && e.message)); resolve(); });
    });
    req.setTimeout(30000, () => req.destroy(new Error("timeout (30 s)")));
    req.on("error", (e) => { pushError(String(e && e.message)); resolve(); });
    req.end(buf);
  });
}

async function push(n, target, conc) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
  const first = nextId, last = nextId + n; // events first .. last-1
  nextId = last;
  let next = first;
  const t0 = Date.now(), errs0 = pushErrors;
  pushing += n;
  async function worker() {
    while (next < last) {
      const id = next++;
      await postEvent(agent, target, event(id));
      pushing--;
    }
  }
  const workers = [];
  for (let i = 0; i < Math.min(conc, n); i++) workers.push(worker());
  await Promise.all(workers);
  agent.destroy();
  console.log("pushed " + n + " events (" + (pushErrors - errs0) + " errors) in " +
              ((Date.now() - t0) / 1000).toFixed(2) + " s");
}

// ---- the open platform ----

function sendMessage(req, res, p, url, replyTo) {
  if (req.headers["authorization"] !== "Bearer " + TOKEN) {
    return refuse(res, "Invalid access token for authorization", 99991663, 400);
  }
  let content = null;
  try { content = typeof p.content === "string" ? JSON.parse(p.content) : null; } catch (e) { content = null; }
  if (p.msg_type !== "text" || !content || typeof content.text !== "string") {
    return refuse(res, "bad content: msg_type " + p.msg_type + ", content " + JSON.stringify(p.content).slice(0, 200), 230001);
  }
  let chat;
  if (replyTo) {
    const m = replyTo.match(/^om_in(\d+)$/);
    chat = m ? "oc_bench" + (Number(m[1]) % 200) : "oc_unknown";
  } else {
    if (url.searchParams.get("receive_id_type") !== "chat_id" || typeof p.receive_id !== "string") {
      return refuse(res, "bad receive_id: " + url.searchParams.get("receive_id_type") + " " + p.receive_id, 230001);
    }
    chat = p.receive_id;
  }
  if (typeof p.uuid === "string") {
    if (uuids.has(p.uuid)) dupUuids++; // Feishu would drop it (and answer as for the first)
    uuids.add(p.uuid);
  }
  sent++;
  return reply(res, { code: 0, msg: "success", data: { message_id: "om_" + sent, chat_id: chat, msg_type: "text",
    create_time: String(Date.now()), body: { content: p.content }, sender: { id: APP_ID, id_type: "app_id", sender_type: "app" } } });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const url = new URL(req.url, "http://x");
    const path = url.pathname;
    if (path === "/control/push" && req.method === "POST") {
      const n = Number(url.searchParams.get("n") || 1), conc = Number(url.searchParams.get("conc") || 32);
      let target;
      try { target = new URL(url.searchParams.get("url") || ""); } catch (e) { target = null; }
      if (!target || target.protocol !== "http:" || target.hostname !== "127.0.0.1") {
        return reply(res, { ok: false, error: "url must be http://127.0.0.1:PORT/..." }, 400);
      }
      if (!(n >= 1 && n <= 1e7 && conc >= 1 && conc <= 1024)) return reply(res, { ok: false, error: "bad n or conc" }, 400);
      push(n, target, conc);
      return reply(res, { ok: true, pushing: n });
    }
    if (path === "/control/stats") {
      return reply(res, { sent, pushed, push_errors: pushErrors, pushing, bad_requests: bad, duplicate_uuids: dupUuids });
    }
    let p = {};
    try { p = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {}; } catch (e) { p = {}; }
    if (path === "/open-apis/auth/v3/tenant_access_token/internal" && req.method === "POST") {
      if (p.app_id !== APP_ID || p.app_secret !== APP_SECRET) return refuse(res, "invalid app_id or app_secret", 10014, 200);
      return reply(res, { code: 0, msg: "ok", tenant_access_token: TOKEN, expire: 7200 });
    }
    if (path === "/open-apis/bot/v3/info" && req.method === "GET") {
      if (req.headers["authorization"] !== "Bearer " + TOKEN) return refuse(res, "Invalid access token for authorization", 99991663, 400);
      return reply(res, { code: 0, msg: "ok", bot: { open_id: "ou_bot", app_name: "Bench", activate_status: 2 } });
    }
    if (path === "/open-apis/im/v1/messages" && req.method === "POST") return sendMessage(req, res, p, url, null);
    const m = path.match(/^\/open-apis\/im\/v1\/messages\/([^/]+)\/reply$/);
    if (m && req.method === "POST") return sendMessage(req, res, p, url, decodeURIComponent(m[1]));
    const key = req.method + " " + path;
    if (!unknown.has(key)) { unknown.add(key); console.log("unexpected request: " + key); }
    return reply(res, { code: 404, msg: "404 page not found" }, 404);
  });
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;
server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => console.log("listening " + server.address().port));
process.on("SIGTERM", () => {
  console.log("pushed " + pushed + " push_errors " + pushErrors + " sent " + sent + " bad_requests " + bad +
              " duplicate_uuids " + dupUuids);
  process.exit(0);
});
