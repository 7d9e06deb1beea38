"use strict";
// One WebSocket connection (docs/websocket.md) for the live view and the chat console: connect
// with the token asking for admin.read, chat.read and chat.write; the grant says which came.
window.CGW = window.CGW || {};
CGW.live = (() => {
  let ws = null, nextId = 1, granted = [], stopped = true, retryMs = 1000;
  const pending = new Map(), listeners = new Map(), statusListeners = [];
  const device = "admin-" + Math.random().toString(36).slice(2, 10);

  function path() {
    const m = document.querySelector('meta[name="chatgw-ws-path"]');
    return m ? m.getAttribute("content") : "";
  }

  function setStatus(s, detail) { for (const fn of statusListeners) fn(s, detail, granted); }

  function request(method, params) {
    return new Promise((resolve) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) return resolve({ ok: false, error: { code: "offline", message: "not connected" } });
      const id = nextId++;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ type: "req", id, method, params }));
    });
  }

  function connect(token) {
    stopped = false;
    if (!path()) return setStatus("unavailable", "the gateway serves no WebSocket (ws.enabled: false)");
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path();
    setStatus("connecting");
    const sock = ws = new WebSocket(url);
    sock.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === "event" && m.event === "connect.challenge") {
        const id = nextId++;
        pending.set(id, (res) => {
          if (!res.ok) { sock.refused = true; return setStatus("refused", res.error && res.error.message); }
          granted = res.payload.auth.scopes || [];
          retryMs = 1000;
          setStatus("connected");
        });
        sock.send(JSON.stringify({ type: "req", id, method: "connect", params: {
          role: "operator", scopes: ["admin.read", "chat.read", "chat.write"], auth: { token },
          device: { id: device }, client: { id: "chatgw-admin", version: "1" } } }));
      } else if (m.type === "res") {
        const cb = pending.get(m.id);
        pending.delete(m.id);
        if (cb) cb(m);
      } else if (m.type === "event") {
        for (const fn of listeners.get(m.event) || []) fn(m.payload);
      }
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      granted = [];
      for (const cb of pending.values()) cb({ ok: false, error: { code: "closed", message: "connection closed" } });
      pending.clear();
      if (sock.refused || stopped) return;
      setStatus("offline", "closed " + ev.code);
      setTimeout(() => { if (!stopped && !ws) connect(token); }, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    };
  }

  function close() {
    stopped = true;
    if (ws) { const s = ws; ws = null; s.close(1000); }
    granted = [];
  }

  return {
    connect, close, request, device,
    on: (event, fn) => { if (!listeners.has(event)) listeners.set(event, []); listeners.get(event).push(fn); },
    onStatus: (fn) => statusListeners.push(fn),
    has: (scope) => granted.includes(scope),
  };
})();
