// Local keep-alive upstream for the outbound HTTP benchmark: answers every request with a small
// JSON body. Prints "listening PORT" once ready. Usage: node upstream.js [port]
"use strict";
const http = require("http");
const body = Buffer.from('{"ok":true,"result":{"message_id":1}}');
let count = 0, conns = 0;
const server = http.createServer((req, res) => {
  count++;
  if (process.env.DUMP_HEADERS && count <= 1) console.log(JSON.stringify(req.rawHeaders));
  req.resume();
  req.on("end", () => {
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
