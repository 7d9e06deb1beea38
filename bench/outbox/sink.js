// The fake chat platform of the outbox benchmark: the test channel's HTTP sink, answering every
// POST /deliver at once with a new message id (keep-alive). Prints "listening PORT" when ready
// and the count served on SIGTERM. Usage: node sink.js [port]
"use strict";
const http = require("http");
let count = 0, conns = 0;
const server = http.createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    count++;
    const body = Buffer.from('{"ok":true,"message_id":"' + count + '"}');
    res.writeHead(200, { "Content-Type": "application/json", "Content-Length": body.length });
    res.end(body);
  });
});
server.on("connection", () => conns++);
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;
server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  console.log("listening " + server.address().port);
});
process.on("SIGTERM", () => {
  console.log("served " + count + " requests on " + conns + " connections");
  process.exit(0);
});
