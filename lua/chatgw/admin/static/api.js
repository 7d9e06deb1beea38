"use strict";
// The gateway's HTTP API with the token of this tab (sessionStorage: gone when the tab closes).
window.CGW = window.CGW || {};
CGW.api = (() => {
  const KEY = "chatgw.admin.token";
  const token = () => sessionStorage.getItem(KEY);
  const setToken = (t) => (t ? sessionStorage.setItem(KEY, t) : sessionStorage.removeItem(KEY));

  // -> {status, ok, json}; never throws for an HTTP answer (a network failure is status 0)
  async function call(method, path, body) {
    const opts = { method, cache: "no-store", credentials: "omit",
                   headers: { Authorization: "Bearer " + (token() || "") } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let r;
    try { r = await fetch(path, opts); } catch (e) {
      return { status: 0, ok: false, json: { error: "network", message: String(e) } };
    }
    let json = null;
    try { json = await r.json(); } catch (e) { json = null; }
    return { status: r.status, ok: r.ok, json };
  }

  return { token, setToken, call, get: (p) => call("GET", p), post: (p, b) => call("POST", p, b === undefined ? {} : b),
           put: (p, b) => call("PUT", p, b), del: (p) => call("DELETE", p) };
})();
