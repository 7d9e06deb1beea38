"""Talking to a gateway through the fake platforms, for tests that run handlers end to end on
Telegram and Feishu. A mixin of a GatewayTest with self.g (the gateway), self.tg (FakeTelegram),
self.fs (FakeFeishu), and the class attributes TG_TOKEN, FS_APP, FS_VT and FS_EK (the bot token,
the Feishu app id, its verification token and encrypt key)."""


class PlatformChat:
    # ---- Telegram ----
    def say(self, chat_id, text, **kw):
        """A user's message in a Telegram chat; returns its message_id."""
        u = self.tg.text_update(chat_id, text, **kw)
        self.tg.push_update(self.TG_TOKEN, u)
        return u["message"]["message_id"]

    def wait_tg(self, chat_id, n, timeout=15):
        self.wait(lambda: len(self.tg.texts(chat_id)) >= n, timeout,
                  "%d messages in %s (have %r)" % (n, chat_id, self.tg.texts(chat_id)))
        return self.tg.texts(chat_id)

    # ---- Feishu ----
    def fs_say(self, chat_id, text, **kw):
        """A user's message as an encrypted, signed event; returns its message_id."""
        body = self.fs.message_event(self.FS_APP, chat_id, text, self.FS_VT, **kw)
        status, answer = self.fs.event("http://127.0.0.1:%d/feishu/events" % self.g.port("feishu"),
                                       body, encrypt_key=self.FS_EK)
        self.assertEqual(status, 200, answer)
        return body["event"]["message"]["message_id"]

    def fs_texts(self, chat_id):
        return [m["text"] for m in self.fs.messages(chat_id) if not m["deleted"]]

    def wait_fs(self, chat_id, pred, what, timeout=15):
        self.wait(lambda: pred(self.fs_texts(chat_id)), timeout,
                  "%s in %s (have %r)" % (what, chat_id, self.fs_texts(chat_id)))
        return self.fs_texts(chat_id)
