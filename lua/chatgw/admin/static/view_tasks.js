"use strict";
// Tasks: the tasks API's tasks (running, done, the latest) and the supervised loops
// (admin.state, live).
window.CGW = window.CGW || {};
(CGW.views = CGW.views || []).push((() => {
  const { el, clear, badge, time, table, card } = CGW.ui;
  let root, tasks = null, loops = [];

  function render() {
    if (!root) return;
    clear(root);
    root.appendChild(el("h2", {}, "Tasks"));
    if (!tasks) return root.appendChild(el("p", { class: "muted" }, "loading…"));
    root.appendChild(el("div", { class: "cards" }, card("running", String(tasks.running)), card("done", String(tasks.done))));
    root.appendChild(table(["task", "stage", "state", "claimed", "took"],
      (tasks.recent || []).map((t) => [el("span", { class: "mono" }, t.task_id), t.stage, badge(t.state),
        time(t.claimed_at), t.duration_ms === null ? "—" : t.duration_ms + " ms"]), { empty: "no tasks yet" }));
    root.appendChild(el("h3", {}, "Supervised loops"));
    root.appendChild(table(["loop", "state", "restarts", "last error"],
      loops.map((l) => [l.name, badge(l.state), String(l.restarts || 0), l.last_error || ""]), { empty: "no loops" }));
  }

  return {
    id: "tasks", title: "Tasks", needs: (s) => s.includes("admin"),
    mount(node) { root = node; render(); },
    onState(st) {
      if (st.tasks && !st.tasks.error) tasks = st.tasks;
      if (Array.isArray(st.loops)) loops = st.loops;
      render();
    },
  };
})());
