"use strict";
// Limiters: every rate limiter made through chatgw.limiter: its kind and rate, keys tracked and
// refusals (admin.state, live).
window.CGW = window.CGW || {};
(CGW.views = CGW.views || []).push((() => {
  const { el, clear, table } = CGW.ui;
  let root, list = null;

  function rate(l) {
    if (l.kind === "bucket") return l.rate + "/s, burst " + l.burst;
    return l.limit + " per " + (l.window_ms >= 1000 ? l.window_ms / 1000 + " s" : l.window_ms + " ms");
  }

  function render() {
    if (!root) return;
    clear(root);
    root.appendChild(el("h2", {}, "Limiters"));
    if (!list) return root.appendChild(el("p", { class: "muted" }, "loading…"));
    root.appendChild(table(["name", "kind", "rate", "keys", "refused"],
      list.map((l) => [el("span", { class: "mono" }, l.name), l.kind, rate(l), String(l.keys), String(l.rejections)]),
      { rowData: (i) => ({ name: list[i].name }), empty: "no limiters yet" }));
  }

  return {
    id: "limiters", title: "Limiters", needs: (s) => s.includes("admin"),
    mount(node) { root = node; render(); },
    onState(st) { if (Array.isArray(st.limiters)) { list = st.limiters; render(); } },
  };
})());
