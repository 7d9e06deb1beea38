"use strict";
// Overview: health, uptime, reloads, and every channel account with its status badge
// (GET /health?verbose=1 and GET /v1/channels; live from admin.state when the token has admin).
window.CGW = window.CGW || {};
(CGW.views = CGW.views || []).push((() => {
  const { el, clear, badge, duration, time, table, card } = CGW.ui;
  let root, health = null, channels = null;

  function render() {
    if (!root) return;
    clear(root);
    root.appendChild(el("h2", {}, "Overview"));
    if (health) {
      const r = health.reloads || {};
      root.appendChild(el("div", { class: "cards" },
        card("status", badge(health.status || "ok")),
        card("version", health.version || "—"),
        card("uptime", el("span", { id: "uptime" }, duration(health.uptime_s))),
        card("generation", String(health.generation || "—")),
        card("reloads", (r.count || 0) + " (" + (r.failed || 0) + " failed)"),
        card("connections", String(health.connections || 0))));
      if (r.last_error) root.appendChild(el("p", { class: "error" }, "last reload failed: " + r.last_error));
      const checks = Object.entries(health.checks || {}).map(([k, v]) => [k, badge(typeof v === "string" ? v : v.status)]);
      root.appendChild(el("h3", {}, "Checks"));
      root.appendChild(table(["check", "status"], checks));
    }
    root.appendChild(el("h3", {}, "Channels"));
    if (!channels) { root.appendChild(el("p", { class: "muted" }, "loading…")); return; }
    root.appendChild(table(["channel", "account", "status", "last error", "last connected", "outbox", "source"],
      channels.map((c) => [c.channelId, c.accountId, badge(c.status),
        c.status === "error" || c.last_error ? el("span", { class: "error" }, c.last_error || "") : "",
        time(c.last_connected_at), String(c.outbox_depth || 0), c.source || ""]),
      { rowData: (i) => ({ channel: channels[i].channelId + ":" + channels[i].accountId, status: channels[i].status }),
        empty: "no channel accounts" }));
  }

  async function refresh() {
    const [h, c] = await Promise.all([CGW.api.get("/health?verbose=1"), CGW.api.get("/v1/channels")]);
    if (h.ok) health = h.json;
    if (c.ok) channels = c.json.channels || [];
    render();
  }

  return {
    id: "overview", title: "Overview", needs: (s) => s.includes("read") || s.includes("admin"),
    mount(node) { root = node; render(); refresh(); },
    refresh,
    onState(st) {
      if (st.health && !st.health.error) health = st.health;
      if (Array.isArray(st.channels)) channels = st.channels;
      render();
    },
  };
})());
