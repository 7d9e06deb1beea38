// The fake Telegram of the Telegram benchmark (limits off): getUpdates hands out updates pushed
// with POST /control/push?n=N (text messages "/echo N" from 200 chats), long-polling until some
// come; sendMessage answers at once. GET /control/stats -> {"pushed", "sent"}. Keep-alive.
// Prints "listening PORT" when ready. Usage: node fake_telegram.js [port]
"use strict";
const http = require("http");
let pushed = 0, sent = 0, nextId = 1, confirmed = 0;
const queue = [];   // updates not yet confirmed
let waiter = null;  // the pending long poll: { res, timer }

function reply(res, obj) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(200, { "Content-Type": "application/json", "Content-Length": body.length });
  res.end(body);
}

function updatesFrom(offset) {
  while (queue.length && queue[0].update_id < offset) queue.shift(); // confirmed
  return queue.slice(0, 100);
}

function flush() {
  if (!waiter || queue.length === 0) return;
  const w = waiter; waiter = null; clearTimeout(w.timer);
  reply(w.res, { ok: true, result: updatesFrom(w.offset) });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/control/push") {
      const n = Number(url.searchParams.get("n") || 1);
      for (let i = 0; i < n; i++) {
        const id = nextId++, chat = 1000 + (id % 200);
        queue.push({ update_id: id, message: { message_id: id, date: 1, text: "/echo " + id,
          chat: { id: chat, type: "private" }, from: { id: chat, is_bot: false, first_name: "U" },
          entities: [{ type: "bot_command", offset: 0, length: 5 }] } });
      }
      pushed += n;
      flush();
      return reply(res, { ok: true, pushed });
    }
    if (url.pathname === "/control/stats") return reply(res, { pushed, sent });
    const m = url.pathname.match(/^\/bot[^/]+\/(\w+)$/);
    const method = m ? m[1] : "";
    let p = {};
    try { p = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {}; } catch (e) { p = {}; }
    if (method === "getMe") return reply(res, { ok: true, result: { id: 4242, is_bot: true, first_name: "B", username: "bench_bot" } });
    if (method === "getUpdates") {
      const offset = p.offset || 0;
      const out = updatesFrom(offset);
      if (out.length || !p.timeout) return reply(res, { ok: true, result: out });
      if (waiter) { clearTimeout(waiter.timer); reply(waiter.res, { ok: true, result: [] }); }
      waiter = { res, offset, timer: setTimeout(() => { waiter = null; reply(res, { ok: true, result: [] }); }, p.timeout * 1000) };
      return;
    }
    if (method === "sendMessage") {
      sent++;
      return reply(res, { ok: true, result: { message_id: sent, date: 1, chat: { id: p.chat_id, type: "private" }, text: p.text } });
    }
    return reply(res, { ok: true, result: true }); // setMyCommands, ...
  });
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;
server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => console.log("listening " + server.address().port));
process.on("SIGTERM", () => { console.log("pushed " + pushed + " sent " + sent); process.exit(0); });
