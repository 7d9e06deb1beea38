"use strict";
// Breakers: every circuit breaker made through chatgw.breaker, its state, failures and when an
// open one lets a trial call through (admin.state, live).
window.CGW = window.CGW || {};
(CGW.views = CGW.views || []).push((() => {
  const { el, clear, badge, time, table } = CGW.ui;
  let root, list = null;

  function render() {
    if (!root) return;
    clear(root);
    root.appendChild(el("h2", {}, "Breakers"));
    if (!list) return root.appendChild(el("p", { class: "muted" }, "loading…"));
    root.appendChild(table(["name", "state", "consecutive failures", "failures", "successes", "rejected", "opens",
                            "next half-open"],
      list.map((b) => [el("span", { class: "mono" }, b.name), badge(b.state), String(b.consecutive_failures),
        String(b.failures), String(b.successes), String(b.rejections), String(b.opens),
        b.state === "open" ? time(b.next_half_open_at) + " (in " + Math.ceil(b.retry_after_ms / 1000) + " s)" : "—"]),
      { rowData: (i) => ({ name: list[i].name, state: list[i].state }), empty: "no breakers yet" }));
  }

  return {
    id: "breakers", title: "Breakers", needs: (s) => s.includes("admin"),
    mount(node) { root = node; render(); },
    onState(st) { if (Array.isArray(st.breakers)) { list = st.breakers; render(); } },
  };
})());
