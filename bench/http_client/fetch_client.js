// The Node.js side of the outbound HTTP benchmark: CONC async loops using the built-in fetch
// (undici, keep-alive) send TOTAL GET requests to URL. Prints one JSON line with the results
// and this process's CPU time. Usage: node fetch_client.js URL TOTAL CONC
"use strict";
const [url, total, conc] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
async function run(n) {
  let next = 0, ok = 0, bad = 0;
  async function worker() {
    while (next < n) {
      next++;
      const r = await fetch(url);
      const t = await r.text();
      if (r.status === 200 && t.length > 0) ok++; else bad++;
    }
  }
  await Promise.all(Array.from({ length: conc }, worker));
  return { ok, bad };
}
(async () => {
  await run(Math.min(2000, total)); // warm-up: connections, JIT
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const r = await run(total);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const cpuSecs = (cpu.user + cpu.system) / 1e6;
  console.log(JSON.stringify({ requests: r.ok, errors: r.bad, seconds: secs,
    rps: r.ok / secs, cpu_seconds: cpuSecs, cpu_us_per_request: cpuSecs * 1e6 / r.ok }));
})();
