"""E2E: chatgw.db, the embedded store (<data_dir>/chatgw.db): statements from handlers, types,
group commit with one failing write, transactions (a foreign wait raises; a raise rolls back),
migrations (once, across restarts; a failing one fails the reload and keeps the old state),
no db at load time, `chatgw check` never opens the db, and a corrupt file at boot."""
import os
import shutil
import signal
import sqlite3
import tempfile
import unittest

from harness import Gateway, GatewayTest, run_cli

ITEMS = """
return {
  migrations = {
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, data BLOB, n REAL)",
    "ALTER TABLE items ADD COLUMN big INTEGER",
  },
  routes = {
    ["POST /items"] = function(req)
      local b = req.json
      local n, id = chatgw.db.exec("INSERT INTO items (name, data, n, big) VALUES (:name, :data, :n, :big)",
        { name = b.name, data = b.data and chatgw.db.blob(b.data) or nil, n = b.n, big = b.big })
      if not n then return 409, { error = id } end
      return { id = id, changes = n }
    end,
    -- scope read: an admin-scope call adds an audit counter write of its own (chatgw_store_last_batch_jobs)
    ["GET /items"] = { scope = "read", function(req)
      local rows, err = chatgw.db.query("SELECT id, name, length(data) AS len, n, big FROM items ORDER BY id")
      if not rows then return 500, { error = err } end
      return { rows = rows }
    end },
    ["GET /blob/:id"] = function(req)
      local rows = assert(chatgw.db.query("SELECT data FROM items WHERE id = ?", tonumber(req.params.id)))
      return 200, rows[1] and rows[1].data or "", { ["Content-Type"] = "application/octet-stream" }
    end,
    ["POST /three"] = { scope = "read", function(req)
      -- three writes in one loop turn: the tasks start together on the next turn
      local out = {}
      for i, name in ipairs({ "g1", "g1", "g2" }) do
        chatgw.spawn(function()
          local n, err = chatgw.db.exec("INSERT INTO items (name) VALUES (?)", name)
          out[i] = n and "ok" or err
        end)
      end
      for _ = 1, 200 do
        if out[1] and out[2] and out[3] then break end
        chatgw.sleep(5)
      end
      return out
    end },
    ["POST /tx"] = function(req)
      local r, err = chatgw.db.tx(function(tx)
        assert(tx:exec("INSERT INTO items (name) VALUES ('tx1')"))
        local rows = assert(tx:query("SELECT count(*) AS n FROM items WHERE name = 'tx1'"))
        if req.json.fail then error("boom") end
        return rows[1].n
      end)
      return { n = r, err = err }
    end,
    ["POST /tx-raise"] = function(req)
      local ok, err = pcall(chatgw.db.tx, function(tx)
        assert(tx:exec("INSERT INTO items (name) VALUES ('rolled-back')"))
        error("boom")
      end)
      local rows = assert(chatgw.db.query("SELECT count(*) AS n FROM items WHERE name = 'rolled-back'"))
      return { ok = ok, err = tostring(err), left = rows[1].n }
    end,
    ["POST /tx-sleep"] = function(req)
      local ok, err = pcall(chatgw.db.tx, function(tx) chatgw.sleep(1) end)
      local ok2, err2 = pcall(chatgw.db.tx, function(tx) chatgw.db.query("SELECT 1") end)
      return { ok = ok, err = tostring(err), ok2 = ok2, err2 = tostring(err2) }
    end,
    ["GET /bad-sql"] = function(req)
      local rows, err = chatgw.db.query("SELEC 1")
      local ok, perr = pcall(chatgw.db.query, "SELECT ?", {})
      local ok3, terr = pcall(chatgw.db.exec, "SELECT ?", print)
      return { rows = rows, err = err, ok3 = ok3, terr = tostring(terr) }
    end,
  },
}
"""


class StoreTest(GatewayTest):
    def write_dir(self, files):
        d = tempfile.mkdtemp(prefix="chatgw-store-")
        self.addCleanup(shutil.rmtree, d, True)
        h = os.path.join(d, "handlers")
        os.makedirs(h)
        for name, src in files.items():
            with open(os.path.join(h, name), "w") as f:
                f.write(src)
        return h

    def db_path(self, g):
        return os.path.join(g.dir, "data", "chatgw.db")

    def test_statements_types_and_persistence(self):
        g = self.gw({"items.lua": ITEMS})
        r = g.request("POST", "/items", json_body={"name": "a", "data": "x\u0000y", "n": 2.5,
                                                   "big": "12345678901234567"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"id": 1, "changes": 1})
        # a big integer given as a string is stored as text; one beyond 2^53 comes back exact
        r = g.request("POST", "/items", json_body={"name": "b", "big": 9007199254740993})
        self.assertEqual(r.status, 200, r)
        dup = g.request("POST", "/items", json_body={"name": "a"})
        self.assertEqual(dup.status, 409)
        self.assertTrue(dup.json()["error"].startswith("db: UNIQUE constraint failed"), dup.json())
        rows = g.get("/items").json()["rows"]
        self.assertEqual(rows[0]["name"], "a")
        self.assertEqual(rows[0]["len"], 3)
        self.assertEqual(rows[0]["n"], 2.5)
        self.assertNotIn("len", rows[1])  # NULL columns are absent
        self.assertEqual(g.get("/blob/1").body, b"x\x00y")
        r = g.get("/bad-sql").json()
        self.assertTrue(r["err"].startswith('db: near "SELEC"'), r)
        self.assertFalse(r["ok3"])
        self.assertIn("chatgw.db.exec: parameter 2 must be", r["terr"])
        # the file is a real SQLite database, WAL mode
        con = sqlite3.connect(self.db_path(g))
        self.assertEqual(con.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(con.execute("SELECT name FROM items ORDER BY id").fetchall(), [("a",), ("b",)])
        con.close()
        # kill -9: what was answered is in the file
        g.request("POST", "/items", json_body={"name": "c"})
        g.proc.send_signal(signal.SIGKILL)
        g.proc.wait()
        g.restart()
        names = [x["name"] for x in g.get("/items").json()["rows"]]
        self.assertEqual(names, ["a", "b", "c"])

    def test_group_commit_one_failing_write(self):
        g = self.gw({"items.lua": ITEMS})
        r = g.request("POST", "/three").json()
        self.assertEqual(r[0], "ok")
        self.assertTrue(r[1].startswith("db: UNIQUE constraint failed"), r)
        self.assertEqual(r[2], "ok")
        names = [x["name"] for x in g.get("/items").json()["rows"]]
        self.assertEqual(names, ["g1", "g2"])
        m = g.get("/metrics").text
        self.assertIn("chatgw_store_last_batch_jobs 3", m)

    def test_transactions(self):
        g = self.gw({"items.lua": ITEMS})
        self.assertEqual(g.request("POST", "/tx", json_body={}).json(), {"n": 1})
        r = g.request("POST", "/tx-raise").json()
        self.assertFalse(r["ok"])
        self.assertIn("boom", r["err"])
        self.assertEqual(r["left"], 0)
        r = g.request("POST", "/tx-sleep").json()
        self.assertFalse(r["ok"])
        self.assertIn("cannot wait here: inside a transaction only the database may be waited on", r["err"])
        self.assertFalse(r["ok2"])
        self.assertIn("inside chatgw.db.tx use the transaction's own tx:exec/tx:query", r["err2"])
        # the writer is free again
        self.assertEqual(g.request("POST", "/items", json_body={"name": "after"}).status, 200)

    def test_migrations_once_and_failed_reload(self):
        g = self.gw({"items.lua": ITEMS})
        g.request("POST", "/items", json_body={"name": "kept"})
        self.assertEqual(g.stop(), 0)
        g2 = g.restart()
        self.assertEqual([x["name"] for x in g2.get("/items").json()["rows"]], ["kept"])
        con = sqlite3.connect(self.db_path(g2))
        self.assertEqual(con.execute("SELECT owner, version FROM _migrations WHERE owner LIKE 'handler:%' "
                                     "ORDER BY version").fetchall(),
                         [("handler:items", 1), ("handler:items", 2)])
        con.close()
        # a reload whose new migration fails keeps the running state
        g2.write_handler("items.lua", ITEMS.replace(
            '"ALTER TABLE items ADD COLUMN big INTEGER",',
            '"ALTER TABLE items ADD COLUMN big INTEGER", "CREATE TABLE broken (",'))
        r = g2.reload()
        self.assertEqual(r["last_result"], "failed")
        self.assertIn("handler:items: migration 3", r["last_error"])
        self.assertEqual(g2.get("/items").status, 200)
        g2.write_handler("items.lua", ITEMS.replace(
            '"ALTER TABLE items ADD COLUMN big INTEGER",',
            '"ALTER TABLE items ADD COLUMN big INTEGER", "CREATE TABLE more (x)",'))
        self.assertEqual(g2.reload()["last_result"], "ok")

    def test_no_db_while_loading_and_bad_migrations_key(self):
        g = Gateway({"a.lua": 'chatgw.db.query("SELECT 1")\nreturn {}'})
        self.addCleanup(g.cleanup)
        g.start(wait_ready=False)
        code = g.proc.wait(20)
        self.assertEqual(code, 1)
        self.assertIn("chatgw.db.query: not available while handlers load", g.stderr_text())
        code, out, err = run_cli(["check", self.write_dir({"b.lua": "return { migrations = { 1 } }"})])
        self.assertEqual(code, 1)
        self.assertIn("b.lua:1: migrations[1] must be a non-empty SQL string", err)

    def test_check_never_opens_the_db(self):
        d = self.write_dir({"items.lua": ITEMS})
        data = os.path.join(os.path.dirname(d), "data")
        code, out, err = run_cli(["check", d], env={"CHAT_GATEWAY_DATA_DIR": data})
        self.assertEqual(code, 0, err)
        self.assertFalse(os.path.exists(os.path.join(data, "chatgw.db")))

    def test_corrupt_file_at_boot(self):
        g = Gateway({"items.lua": ITEMS})
        self.addCleanup(g.cleanup)
        os.makedirs(os.path.join(g.dir, "data"), mode=0o700, exist_ok=True)
        junk = b"not a database " * 200
        with open(os.path.join(g.dir, "data", "chatgw.db"), "wb") as f:
            f.write(junk)
        g.start(wait_ready=False)
        code = g.proc.wait(20)
        self.assertEqual(code, 1)
        err = g.stderr_text()
        self.assertIn(os.path.join(g.dir, "data", "chatgw.db") + ": file is not a database", err)
        with open(os.path.join(g.dir, "data", "chatgw.db"), "rb") as f:
            self.assertEqual(f.read(), junk)


if __name__ == "__main__":
    unittest.main()
