"use strict";
// Exec pools: chatgw.exec children running and waiting, per module, and how long calls waited
// for a slot (admin.state, live; from the chatgw_exec_* metrics).
window.CGW = window.CGW || {};
(CGW.views = CGW.views || []).push((() => {
  const { el, clear, table, card } = CGW.ui;
  let root, ex = null;

  function render() {
    if (!root) return;
    clear(root);
    root.appendChild(el("h2", {}, "Exec pools"));
    if (!ex) return root.appendChild(el("p", { class: "muted" }, "loading…"));
    root.appendChild(el("div", { class: "cards" }, card("running", String(ex.inflight)), card("waiting", String(ex.queued))));
    root.appendChild(table(["module", "running", "waiting", "calls", "mean wait", "results"],
      (ex.modules || []).map((m) => [m.module, String(m.inflight), String(m.queued), String(m.waits),
        m.wait_mean_ms + " ms", Object.entries(m.results || {}).map(([k, v]) => k + " " + v).join(", ") || "—"]),
      { empty: "no exec calls yet" }));
  }

  return {
    id: "exec", title: "Exec pools", needs: (s) => s.includes("admin"),
    mount(node) { root = node; render(); },
    onState(st) { if (st.exec && !st.exec.error) { ex = st.exec; render(); } },
  };
})());
