"use strict";
// Chat console: talk to the chat handlers over the ws chat channel (docs/websocket.md "Chat"),
// as examples/webchat does: chat.join, chat.send, the bot's chat.message events, chat.press.
window.CGW = window.CGW || {};
(CGW.views = CGW.views || []).push((() => {
  const { el, clear } = CGW.ui;
  let root, log, room = "admin-console", joined = "", seq = 1;

  function show(kind, text, id, buttons) {
    let li = id && log.querySelector('li[data-id="' + CSS.escape(id) + '"]');
    if (!li) {
      li = el("li", id ? { dataset: { id } } : {});
      log.appendChild(li);
    }
    li.className = kind;
    li.textContent = text;
    for (const rowb of buttons || []) {
      const div = li.appendChild(el("div", {}));
      for (const b of rowb) {
        div.appendChild(el("button", { type: "button", onclick: () => CGW.live.request("chat.press",
          { chat_id: joined, message_id: id, data: b.data }) }, b.text));
      }
    }
    log.scrollTop = log.scrollHeight;
  }

  async function join() {
    room = root.querySelector("#chat-room").value.trim() || "admin-console";
    const r = await CGW.live.request("chat.join", { chat_id: room });
    if (!r.ok) return show("error", r.error.code + ": " + r.error.message);
    joined = room;
    root.querySelector("#chat-status").textContent = "in " + room + " as " + CGW.live.device;
  }

  async function send(e) {
    e.preventDefault();
    const box = root.querySelector("#chat-text");
    const text = box.value.trim();
    if (!text) return;
    if (joined !== (root.querySelector("#chat-room").value.trim() || "admin-console")) await join();
    box.value = "";
    show("me", text);
    const r = await CGW.live.request("chat.send", { chat_id: joined, text, client_msg_id: CGW.live.device + "-" + seq++ });
    if (!r.ok) show("error", r.error.code + ": " + r.error.message);
  }

  CGW.live.on("chat.message", (p) => {
    if (!log || p.chat_id !== joined) return;
    show(p.bot ? "bot" : "other", p.bot ? p.text : p.from.id + ": " + p.text, p.id, p.buttons);
  });

  return {
    id: "chat", title: "Chat console", needs: (s) => s.includes("admin") || s.includes("ws"),
    mount(node) {
      root = node;
      clear(root);
      root.appendChild(el("h2", {}, "Chat console"));
      root.appendChild(el("p", { class: "muted", id: "chat-status" }, "talks to your chat handlers over the ws channel"));
      log = root.appendChild(el("ul", { id: "chat-log" }));
      root.appendChild(el("form", { class: "toolbar", id: "chat-form", onsubmit: send },
        el("input", { id: "chat-room", value: room, size: 12, title: "chat id", autocomplete: "off" }),
        el("input", { id: "chat-text", placeholder: "a message, or /help", autocomplete: "off", size: 50 }),
        el("button", { type: "submit", id: "chat-send" }, "Send")));
    },
  };
})());
