// The fake model server of the tasks benchmark (bench/tasks/run.sh): an OpenAI-compatible
// chat completions endpoint as chatgw's deepseek provider calls it (DEEPSEEK_BASE_URL), answering
// every POST /v1/chat/completions that carries "Authorization: Bearer bench-key" at once with a
// fixed, non-streamed completion ("ok"). Keep-alive; 127.0.0.1 only.
// GET /control/stats -> {"requests", "bad_requests", "connections", "streamed"}: requests counts
// the completions answered 200, bad_requests anything else (wrong path, method or key, or a body
// without "messages"; the first 20 are logged), connections the TCP connections that carried a
// completion request (not those of /control), streamed the requests that asked for a stream
// (answered unstreamed all the same).
// Prints "listening PORT" when ready and the counts on SIGTERM. Usage: node fake_llm.js [port]
"use strict";
const http = require("http");

const KEY = "Bearer bench-key";
const ANSWER = Buffer.from(JSON.stringify({
  id: "x", object: "chat.completion", created: 0, model: "deepseek-chat",
  choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
}));
const HEADERS = { "Content-Type": "application/json", "Content-Length": ANSWER.length };

let requests = 0, bad = 0, conns = 0, streamed = 0;

function refuse(res, status, why) {
  bad++;
  if (bad <= 20) console.log("bad request: " + why);
  const body = Buffer.from(JSON.stringify({ error: { message: why, type: "invalid_request_error" } }));
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": body.length });
  res.end(body);
}

function stats() {
  return { requests, bad_requests: bad, connections: conns, streamed };
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/control/stats") {
    req.resume();
    const body = Buffer.from(JSON.stringify(stats()));
    res.writeHead(200, { "Content-Type": "application/json", "Content-Length": body.length });
    return res.end(body);
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    if (req.method !== "POST" || req.url !== "/v1/chat/completions") return refuse(res, 404, req.method + " " + req.url);
    if (req.headers.authorization !== KEY) return refuse(res, 401, "authorization " + req.headers.authorization);
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    // a cheap sanity check of the request (no JSON parse: the fake should cost little)
    if (body.indexOf('"messages"') < 0) return refuse(res, 400, "no messages in " + body.toString().slice(0, 200));
    if (body.indexOf('"stream":true') >= 0) streamed++;
    if (!req.socket.benchCounted) { req.socket.benchCounted = true; conns++; }
    requests++;
    res.writeHead(200, HEADERS);
    res.end(ANSWER);
  });
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 125000;
server.requestTimeout = 0;
server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  console.log("listening " + server.address().port);
});
process.on("SIGTERM", () => {
  console.log("stats " + JSON.stringify(stats()));
  process.exit(0);
});
