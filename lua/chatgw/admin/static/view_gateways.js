"use strict";
// Gateways (/v1/gateways, docs/registry.md): the list with status badges (live from
// admin.state), add (gateway_form.js), a gateway's detail, rename, test with its latency, and
// delete after a confirmation.
window.CGW = window.CGW || {};
(CGW.views = CGW.views || []).push((() => {
  const { el, clear, badge, time, table, apiError } = CGW.ui;
  let root, list = null, selected = null, adding = false, note = null, testResult = {}, confirming = false;
  let listNode, sideNode;

  async function load() {
    const r = await CGW.api.get("/v1/gateways?limit=200");
    if (r.ok) list = r.json.gateways;
    else note = { error: true, text: apiError(r) };
    renderList();
    renderSide();
  }

  function renderList() {
    if (!listNode) return;
    clear(listNode);
    if (note) listNode.appendChild(el("p", { class: note.error ? "error" : "ok", id: "gw-note" }, note.text));
    if (!list) return listNode.appendChild(el("p", { class: "muted" }, "loading…"));
    listNode.appendChild(table(["id", "name", "type", "status", "last error", "source"],
      list.map((g) => [el("span", { class: "mono" }, g.id), g.name, g.type, badge(g.status),
        g.last_error ? el("span", { class: "error" }, g.last_error) : "", g.read_only ? "env (read only)" : "registry"]),
      { onrow: (i) => { selected = list[i].id; adding = false; confirming = false; renderSide(); },
        rowData: (i) => ({ id: list[i].id, status: list[i].status }), empty: "no gateways" }));
  }

  async function test(id) {
    testResult[id] = { pending: true };
    renderSide();
    const r = await CGW.api.post("/v1/gateways/" + encodeURIComponent(id) + "/test");
    testResult[id] = r.ok ? r.json : { success: false, error: apiError(r) };
    renderSide();
    load();
  }

  async function rename(id, name) {
    const r = await CGW.api.put("/v1/gateways/" + encodeURIComponent(id), { name });
    note = r.ok ? { text: "renamed " + id } : { error: true, text: apiError(r) };
    load();
  }

  async function remove(id) {
    const r = await CGW.api.del("/v1/gateways/" + encodeURIComponent(id));
    note = r.ok ? { text: "deleted " + id } : { error: true, text: apiError(r) };
    selected = r.ok ? null : selected;
    confirming = false;
    load();
  }

  function detail(g) {
    const t = testResult[g.id];
    const nameInput = el("input", { id: "gw-rename", value: g.name, autocomplete: "off", disabled: g.read_only });
    nameInput.defaultValue = g.name;
    const box = el("div", { class: "detail", id: "gw-detail", dataset: { id: g.id } },
      el("h3", {}, g.name + " ", badge(g.status)),
      el("dl", {},
        el("dt", {}, "id"), el("dd", { class: "mono" }, g.id),
        el("dt", {}, "type"), el("dd", {}, g.type),
        el("dt", {}, "credentials"), el("dd", { class: "mono" }, JSON.stringify(g.credential_info || {})),
        el("dt", {}, "config"), el("dd", { class: "mono" }, JSON.stringify(g.config || {})),
        el("dt", {}, "last connected"), el("dd", {}, time(g.last_connected_at)),
        el("dt", {}, "last error"), el("dd", { class: "error" }, g.last_error ? g.last_error + " (" + time(g.last_error_at) + ")" : ""),
        g.webhook_path ? [el("dt", {}, "webhook"), el("dd", { class: "mono" }, "POST " + g.webhook_path)] : null,
        el("dt", {}, "created"), el("dd", {}, time(g.created_at))),
      el("div", { class: "toolbar" },
        el("button", { type: "button", id: "gw-test", onclick: () => test(g.id) }, "Test"),
        t ? el("span", { id: "gw-test-result", class: t.pending ? "muted" : t.success ? "ok" : "error" },
               t.pending ? "testing…" : t.success ? "ok in " + t.latency_ms + " ms" : "failed: " + (t.error || "?")) : null));
    if (!g.read_only) {
      box.appendChild(el("div", { class: "toolbar" }, nameInput,
        el("button", { type: "button", id: "gw-rename-save", onclick: () => rename(g.id, nameInput.value.trim()) }, "Rename"),
        el("button", { type: "button", id: "gw-delete", onclick: () => { confirming = true; renderSide(); } }, "Delete…")));
      if (confirming) {
        box.appendChild(el("div", { class: "confirm toolbar" }, "Delete " + g.id + "? It stops at once.",
          el("button", { type: "button", id: "gw-delete-confirm", onclick: () => remove(g.id) }, "Yes, delete"),
          el("button", { type: "button", onclick: () => { confirming = false; renderSide(); } }, "Cancel")));
      }
    } else box.appendChild(el("p", { class: "muted" }, "From the environment or the config file: read only."));
    return box;
  }

  // What the detail shows, less what moves all the time (a bot's last poll).
  const keyOf = (g) => JSON.stringify(Object.assign({}, g, { last_connected_at: null, updated_at: null }),
                                      null, 0) + JSON.stringify(testResult[g.id] || null) + confirming;
  let shownKey = null;

  function renderSide(fromUpdate) {
    if (!sideNode) return;
    if (adding) return; // the form keeps what is typed: not rebuilt by updates
    const g = selected && (list || []).find((x) => x.id === selected);
    const key = g ? keyOf(g) : null;
    if (fromUpdate) {
      // an update rebuilds the detail only when what it shows changed, and never under the
      // operator's typing (the rename field)
      const input = sideNode.querySelector("#gw-rename");
      if (key === shownKey || (input && (document.activeElement === input || input.value !== input.defaultValue))) return;
    }
    shownKey = key;
    clear(sideNode);
    if (g) sideNode.appendChild(detail(g));
  }

  function startAdding() {
    adding = true;
    selected = null;
    clear(sideNode);
    sideNode.appendChild(CGW.gatewayForm.build((g) => {
      adding = false;
      selected = g.id;
      note = { text: "created " + g.id };
      load();
    }, () => { adding = false; clear(sideNode); }));
  }

  return {
    id: "gateways", title: "Gateways", needs: (s) => s.includes("admin"),
    mount(node) {
      root = node;
      clear(root);
      root.appendChild(el("h2", {}, "Gateways"));
      root.appendChild(el("div", { class: "toolbar" }, el("button", { type: "button", id: "gw-add", onclick: startAdding }, "Add gateway")));
      listNode = root.appendChild(el("div", {}));
      sideNode = root.appendChild(el("div", {}));
      load();
    },
    onState(st) {
      if (!Array.isArray(st.gateways)) return;
      list = st.gateways;
      renderList();
      renderSide(true);
    },
  };
})());
