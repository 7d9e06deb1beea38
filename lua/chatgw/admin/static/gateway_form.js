"use strict";
// The add-a-gateway form, per type (docs/registry.md "Types"): its fields, the body it posts, and
// the API's validation errors ({error, field}) shown beside the field they name.
window.CGW = window.CGW || {};
CGW.gatewayForm = (() => {
  const { el } = CGW.ui;
  const PROVIDERS = ["openai", "deepseek", "groq", "mistral", "xai", "anthropic", "gemini", "ollama"];
  // [field path, label, input type, options|placeholder]
  const FIELDS = {
    telegram_bot: [["credentials.botToken", "Bot token", "password", "123456:ABC…"],
                   ["config.mode", "Mode", "select", ["poll", "webhook", "send"]],
                   ["config.webhook_url", "Webhook URL", "text", "https://…/telegram/<id> (webhook mode)"],
                   ["config.username", "Username", "text", "optional"]],
    feishu_app: [["credentials.appId", "App ID", "text", "cli_…"], ["credentials.appSecret", "App secret", "password", ""],
                 ["credentials.verificationToken", "Verification token", "password", "optional"],
                 ["credentials.encryptKey", "Encrypt key", "password", "optional"],
                 ["config.stream", "Streaming", "select", ["card", "edit"]]],
    ai: [["credentials.provider", "Provider", "select", PROVIDERS], ["credentials.apiKey", "API key", "password", "not for ollama"],
         ["credentials.baseUrl", "Base URL", "text", "optional"], ["credentials.model", "Model", "text", "optional"],
         ["config.max_tokens", "Max tokens", "number", "optional"], ["config.temperature", "Temperature", "number", "optional"],
         ["config.timeout_ms", "Timeout (ms)", "number", "optional"]],
    webhook: [["credentials.secret", "Secret", "password", "16 characters or more"],
              ["config.handler", "Handler", "text", "a function in a handler file's webhooks table"]],
  };
  const NUMBERS = new Set(["config.max_tokens", "config.temperature", "config.timeout_ms"]);
  const idOf = (path) => "gw-" + path.replace(/\./g, "-");

  function row(path, label, type, extra) {
    const input = type === "select"
      ? el("select", { id: idOf(path), name: path }, extra.map((o) => el("option", { value: o }, o)))
      : el("input", { id: idOf(path), name: path, type, placeholder: extra || "", autocomplete: "off",
                      step: type === "number" ? "any" : null });
    return [el("label", { for: idOf(path) }, label), input,
            el("p", { class: "field-error error", dataset: { field: path }, hidden: true })];
  }

  // onDone(gateway) after a 201
  function build(onDone, onCancel) {
    const typeSel = el("select", { id: "gw-type", name: "type" },
      Object.keys(FIELDS).map((t) => el("option", { value: t }, t)));
    const general = el("p", { class: "error", id: "gw-form-error", hidden: true });
    const form = el("form", { class: "stack", id: "gateway-form" },
      el("label", { for: "gw-type" }, "Type"), typeSel, el("p", { class: "field-error error", dataset: { field: "type" }, hidden: true }),
      el("label", { for: "gw-id" }, "Id"), el("input", { id: "gw-id", name: "id", placeholder: "optional: a-z 0-9 _ -", autocomplete: "off" }),
      el("p", { class: "field-error error", dataset: { field: "id" }, hidden: true }),
      el("label", { for: "gw-name" }, "Name"), el("input", { id: "gw-name", name: "name", autocomplete: "off" }),
      el("p", { class: "field-error error", dataset: { field: "name" }, hidden: true }),
      general,
      el("div", { class: "actions" }, el("button", { type: "submit", id: "gw-create" }, "Create"),
         el("button", { type: "button", onclick: onCancel }, "Cancel")));
    // the type's fields sit between the common ones and the actions: rebuilt when the type changes
    function addTyped() {
      for (const f of FIELDS[typeSel.value]) for (const n of row(...f)) { n.dataset.typed = "1"; form.insertBefore(n, general); }
    }
    typeSel.addEventListener("change", () => {
      for (const n of [...form.querySelectorAll("[data-typed]")]) n.remove();
      addTyped();
    });
    addTyped();

    function body() {
      const b = { type: typeSel.value, name: form.querySelector("#gw-name").value.trim(), credentials: {}, config: {} };
      const id = form.querySelector("#gw-id").value.trim();
      if (id) b.id = id;
      for (const [path] of FIELDS[b.type]) {
        const v = form.querySelector("#" + idOf(path)).value.trim();
        if (v === "") continue;
        const [group, key] = path.split(".");
        b[group][key] = NUMBERS.has(path) ? Number(v) : v;
      }
      if (Object.keys(b.config).length === 0) delete b.config;
      return b;
    }

    function showError(res) {
      for (const p of form.querySelectorAll(".field-error, #gw-form-error")) { p.hidden = true; p.textContent = ""; }
      const j = res.json || {};
      const msg = CGW.ui.apiError(res);
      let target = j.field && [...form.querySelectorAll(".field-error")].find((p) => p.dataset.field === j.field);
      if (!target && j.field) {
        // "credentials" (the object missing) or a nested field: the closest shown one
        target = [...form.querySelectorAll(".field-error")].find((p) => p.dataset.field.startsWith(j.field + "."));
      }
      (target || general).textContent = msg;
      (target || general).hidden = false;
    }

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const res = await CGW.api.post("/v1/gateways", body());
      if (res.status === 201) {
        for (const i of form.querySelectorAll("input[type=password]")) i.value = ""; // no secret left in the page
        onDone(res.json.gateway);
      } else showError(res);
    });
    return form;
  }

  return { build, FIELDS };
})();
