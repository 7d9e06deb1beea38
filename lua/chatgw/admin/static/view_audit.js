"use strict";
// Audit: the audit ledger (GET /v1/audit?since=&kind=&limit=&cursor=), newest first, filtered
// by kind; "audit not available" when this gateway has no ledger (404).
window.CGW = window.CGW || {};
(CGW.views = CGW.views || []).push((() => {
  const { el, clear, time, table, apiError } = CGW.ui;
  let root, body, entries = [], next = null, state = "loading";

  async function load(more) {
    const kind = root.querySelector("#audit-kind").value.trim();
    const since = root.querySelector("#audit-since").value.trim();
    const q = new URLSearchParams({ limit: "100" });
    if (kind) q.set("kind", kind);
    if (since) q.set("since", since);
    if (more && next) q.set("cursor", next);
    const r = await CGW.api.get("/v1/audit?" + q);
    if (r.status === 404) { state = "missing"; entries = []; }
    else if (!r.ok) { state = apiError(r); }
    else {
      state = "ok";
      entries = more ? entries.concat(r.json.entries || []) : (r.json.entries || []);
      next = r.json.next || null;
    }
    render();
  }

  function render() {
    clear(body);
    if (state === "missing") return body.appendChild(el("p", { class: "muted", id: "audit-missing" }, "audit not available"));
    if (state === "loading") return body.appendChild(el("p", { class: "muted" }, "loading…"));
    if (state !== "ok") return body.appendChild(el("p", { class: "error" }, state));
    body.appendChild(table(["time", "kind", "who", "address", "what", "detail"],
      entries.map((e) => [e.time || time(e.ts || e.at), el("span", { class: "mono" }, e.kind), e.who || "", e.addr || "",
        e.what || "", el("span", { class: "mono" }, e.detail ? JSON.stringify(e.detail) : "") ]), { empty: "no entries" }));
    if (next) body.appendChild(el("button", { type: "button", onclick: () => load(true) }, "Older"));
  }

  return {
    id: "audit", title: "Audit", needs: (s) => s.includes("admin"),
    mount(node) {
      root = node;
      clear(root);
      root.appendChild(el("h2", {}, "Audit"));
      root.appendChild(el("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); load(false); } },
        el("input", { id: "audit-kind", placeholder: "kind: gateway.* or exact", autocomplete: "off" }),
        el("input", { id: "audit-since", placeholder: "since: 2024-05-01 or epoch s", autocomplete: "off" }),
        el("button", { type: "submit" }, "Filter")));
      body = root.appendChild(el("div", {}));
      load(false);
    },
  };
})());
