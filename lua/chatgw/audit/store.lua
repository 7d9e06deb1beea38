-- chatgw.audit.store: the audit ledger's table (migrations owned by "chatgw.audit") and its SQL.
--
--   audit_log  one row per event (never updated: a trigger refuses it), and one counter row per
--              (kind, who, addr, what, status, hour) bucket, whose n and last_at are the only
--              columns an UPDATE may change. Rows go only by retention (prune).
local dbmod = require "chatgw.db"

local M = {}

dbmod.register("chatgw.audit", {
  [[
  CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    who TEXT NOT NULL,
    addr TEXT,
    what TEXT,
    detail TEXT,
    n INTEGER,
    last_at REAL,
    bucket TEXT UNIQUE);
  CREATE INDEX audit_log_at ON audit_log (at);
  CREATE INDEX audit_log_kind ON audit_log (kind, id);
  CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    WHEN OLD.bucket IS NULL OR NEW.id IS NOT OLD.id OR NEW.at IS NOT OLD.at OR NEW.kind IS NOT OLD.kind
      OR NEW.who IS NOT OLD.who OR NEW.addr IS NOT OLD.addr OR NEW.what IS NOT OLD.what
      OR NEW.detail IS NOT OLD.detail OR NEW.bucket IS NOT OLD.bucket
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
  ]],
})

local COLS = "id, at, kind, who, addr, what, detail, n, last_at"

function M.insert(at, kind, who, addr, what, detail)
  return chatgw.db.exec("INSERT INTO audit_log (at, kind, who, addr, what, detail) VALUES (?, ?, ?, ?, ?, ?)",
    at, kind, who, addr, what, detail)
end

-- k more in the bucket's counter row (created with n = k).
function M.count(at, last_at, k, bucket, kind, who, addr, what, detail)
  return chatgw.db.exec([[INSERT INTO audit_log (at, kind, who, addr, what, detail, n, last_at, bucket)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (bucket) DO UPDATE SET n = n + excluded.n, last_at = excluded.last_at]],
    at, kind, who, addr, what, detail, k, last_at, bucket)
end

-- f: { since = epoch s, kind = exact, prefix = kind prefix, before = id, after = id,
-- limit = n, order = "desc" | "asc" }. A counter row is "since" while its last call is.
function M.select(f)
  local where, args = {}, {}
  if f.since then -- a counter row's calls lie within its hour: at >= since - 3600 (the index)
    where[#where + 1] = "at >= :since_lo AND coalesce(last_at, at) >= :since"
    args.since, args.since_lo = f.since, f.since - 3600
  end
  if f.kind then
    where[#where + 1] = "kind = :kind"
    args.kind = f.kind
  elseif f.prefix then -- kinds in [prefix, prefix with its last byte + 1): the kind index
    where[#where + 1] = "kind >= :lo AND kind < :hi"
    args.lo, args.hi = f.prefix, f.prefix:sub(1, -2) .. string.char(f.prefix:byte(-1) + 1)
  end
  if f.before then
    where[#where + 1] = "id < :before"
    args.before = f.before
  end
  if f.after then
    where[#where + 1] = "id > :after"
    args.after = f.after
  end
  args.limit = f.limit
  local sql = ("SELECT %s FROM audit_log%s ORDER BY id %s LIMIT :limit"):format(COLS,
    #where > 0 and (" WHERE " .. table.concat(where, " AND ")) or "", f.order == "asc" and "ASC" or "DESC")
  return chatgw.db.query(sql, args)
end

-- Deletes up to `chunk` rows last touched before cutoff. Returns the number deleted | nil, err.
function M.prune_chunk(cutoff, chunk)
  return chatgw.db.exec([[DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log
    WHERE at < :cutoff AND coalesce(last_at, at) < :cutoff LIMIT :chunk)]],
    { cutoff = cutoff, chunk = chunk })
end

return M
