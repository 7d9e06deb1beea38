"use strict";
// The admin page's shell: sign in with a token (sessionStorage), GET /v1/whoami, the views its
// scopes open, one WebSocket for the live view (admin.state) and the chat console.
(() => {
  const { el, clear } = CGW.ui;
  const $ = (id) => document.getElementById(id);
  const views = CGW.views;
  let shown = [], current = null, nodes = {};

  function liveStatus(s, detail) {
    const b = $("live");
    const on = s === "connected" && CGW.live.has("admin.read");
    b.className = "badge " + (on ? "green" : s === "connected" ? "amber" : s === "refused" ? "red" : "grey");
    b.textContent = on ? "live" : s === "connected" ? "connected (no admin.read)" : s;
    b.title = detail || "";
    b.dataset.status = on ? "live" : s;
  }
  CGW.live.onStatus(liveStatus);
  CGW.live.on("admin.state", (st) => { for (const v of shown) if (v.onState) v.onState(st); });

  function select(id) {
    current = id;
    for (const v of shown) {
      nodes[v.id].hidden = v.id !== id;
      $("nav-" + v.id).classList.toggle("active", v.id === id);
    }
    history.replaceState(null, "", "#" + id);
  }

  async function firstState() { // before the first push arrives
    const r = await CGW.api.get("/v1/admin/state");
    if (r.ok) for (const v of shown) if (v.onState) v.onState(r.json);
  }

  async function signIn(token) {
    CGW.api.setToken(token);
    const r = await CGW.api.get("/v1/whoami");
    if (!r.ok) {
      CGW.api.setToken(null);
      $("login-error").textContent = r.status === 401 ? "this token is not valid" : CGW.ui.apiError(r);
      $("login-error").hidden = false;
      return;
    }
    const scopes = r.json.scopes || [];
    $("login-error").hidden = true;
    $("login").hidden = true;
    $("token").value = "";
    $("who").textContent = r.json.name + " · " + scopes.join(", ");
    $("logout").hidden = false;
    shown = views.filter((v) => v.needs(scopes));
    const nav = clear($("nav")), main = clear($("views"));
    nodes = {};
    for (const v of shown) {
      nav.appendChild(el("button", { type: "button", id: "nav-" + v.id, dataset: { view: v.id }, onclick: () => select(v.id) }, v.title));
      nodes[v.id] = main.appendChild(el("section", { class: "view", id: "view-" + v.id, hidden: true }));
      v.mount(nodes[v.id]);
    }
    $("nothing").hidden = shown.length > 0;
    $("app").hidden = shown.length === 0;
    const want = location.hash.slice(1);
    if (shown.length) select(shown.some((v) => v.id === want) ? want : shown[0].id);
    if (scopes.includes("admin")) firstState();
    if (scopes.includes("admin") || scopes.includes("ws")) CGW.live.connect(token);
    else liveStatus("off", "this token has no ws or admin scope: no live updates");
  }

  function signOut() {
    CGW.live.close();
    CGW.api.setToken(null);
    location.hash = "";
    location.reload();
  }

  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("token").value.trim();
    if (t) signIn(t);
  });
  $("logout").addEventListener("click", signOut);
  if (CGW.api.token()) signIn(CGW.api.token());
})();
