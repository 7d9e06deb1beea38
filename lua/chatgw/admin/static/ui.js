"use strict";
// DOM helpers of the admin page. Text goes in as text (textContent), never as markup.
window.CGW = window.CGW || {};
CGW.ui = (() => {
  // el("td", {class: "x", onclick: fn, dataset: {id: 1}}, "text", childNode, ...)
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "dataset") Object.assign(e.dataset, v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "value") e.value = v;
      else if (v === true) e.setAttribute(k, "");
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  // connected green, disconnected grey, error red, anything else (connecting, half_open) amber
  const COLORS = { connected: "green", closed: "green", ok: "green", running: "green", done: "green",
                   disconnected: "grey", off: "grey", error: "red", open: "red", failed: "red",
                   degraded: "red" };
  function badge(status) {
    return el("span", { class: "badge " + (COLORS[status] || "amber"), dataset: { status: String(status) } },
              String(status));
  }

  function time(ts) {
    if (ts === undefined || ts === null) return "—";
    return new Date(ts * 1000).toLocaleString();
  }

  function duration(s) {
    if (s === undefined || s === null) return "—";
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
  }

  // table(["a", "b"], rows of cells, {onrow(i), empty: "none"})
  function table(headers, rows, opts) {
    opts = opts || {};
    const body = el("tbody");
    rows.forEach((cells, i) => {
      const tr = el("tr", opts.onrow ? { class: "clickable", onclick: () => opts.onrow(i) } : {},
                    cells.map((c) => el("td", {}, c)));
      if (opts.rowData) Object.assign(tr.dataset, opts.rowData(i));
      body.appendChild(tr);
    });
    if (rows.length === 0) body.appendChild(el("tr", {}, el("td", { colspan: headers.length, class: "muted" },
                                                        opts.empty || "none")));
    return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), body);
  }

  function card(label, value) {
    return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
  }

  // An API answer's error as a sentence: {error, field, message}
  function apiError(res) {
    const j = res.json || {};
    if (res.status === 403) return "this token lacks the scope " + (j.scope || "admin");
    return (j.error || ("HTTP " + res.status)) + (j.field ? " (" + j.field + ")" : "") +
      (j.message ? ": " + j.message : "");
  }

  return { el, clear, badge, time, duration, table, card, apiError };
})();
