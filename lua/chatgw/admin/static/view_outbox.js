"use strict";
// Outbox: depth and delivery rate per channel account (admin.state, live), and the failed
// messages with the platform's reason, each to retry or drop (/v1/admin/outbox/*).
window.CGW = window.CGW || {};
(CGW.views = CGW.views || []).push((() => {
  const { el, clear, time, table } = CGW.ui;
  let root, accounts = null, failed = null, failedCount = -1, note = null;

  async function loadFailed() {
    const r = await CGW.api.get("/v1/admin/outbox/failed?limit=100");
    failed = r.ok ? r.json.messages : [];
    if (!r.ok) note = { error: true, text: CGW.ui.apiError(r) };
    render();
  }

  async function act(id, verb) {
    const r = await CGW.api.post("/v1/admin/outbox/" + id + "/" + verb);
    note = r.ok ? { text: verb === "retry" ? "message " + id + " queued again" : "message " + id + " dropped" }
                : { error: true, text: CGW.ui.apiError(r) };
    await loadFailed();
  }

  function render() {
    if (!root) return;
    clear(root);
    root.appendChild(el("h2", {}, "Outbox"));
    if (note) root.appendChild(el("p", { class: note.error ? "error" : "ok", id: "outbox-note" }, note.text));
    if (accounts) {
      root.appendChild(table(["channel", "account", "depth", "queued", "sending", "sent / min", "failed", "unknown"],
        accounts.map((a) => [a.channel, a.account, String(a.depth), String(a.queued), String(a.sending),
          String(a.rate_per_min), String(a.failed), String(a.unknown)]), { empty: "no messages yet" }));
    }
    root.appendChild(el("h3", {}, "Failed messages"));
    if (!failed) return root.appendChild(el("p", { class: "muted" }, "loading…"));
    root.appendChild(table(["id", "account", "chat", "kind", "reason", "attempts", "failed at", "text", ""],
      failed.map((m) => [String(m.id), m.channel + ":" + m.account, m.chat_id, m.kind,
        el("span", { class: "error" }, m.error || ""), String(m.attempts), time(m.updated_at), m.text || "",
        el("span", {}, el("button", { type: "button", class: "retry", onclick: () => act(m.id, "retry") }, "Retry"), " ",
                       el("button", { type: "button", class: "drop", onclick: () => act(m.id, "drop") }, "Drop"))]),
      { rowData: (i) => ({ id: failed[i].id }), empty: "no failed messages" }));
  }

  return {
    id: "outbox", title: "Outbox", needs: (s) => s.includes("admin"),
    mount(node) { root = node; render(); loadFailed(); },
    onState(st) {
      if (!st.outbox || !Array.isArray(st.outbox.accounts)) return;
      accounts = st.outbox.accounts;
      const n = accounts.reduce((s, a) => s + a.failed, 0);
      if (n !== failedCount && failedCount !== -1) { failedCount = n; return loadFailed(); }
      failedCount = n;
      render();
    },
  };
})());
