-- chatgw.admin.metrics: samples of the metrics registry (chatgw.metrics.render(), the text
-- GET /metrics serves), for the admin page: the exec pools' metrics have no Lua accessor that
-- lists their modules.
--
--   metrics.samples("chatgw_exec_")  --> { {name = "chatgw_exec_inflight", labels = {module = "charts"}, value = 1}, ... }
local chatgw = chatgw
local tonumber, find, sub, gsub, gmatch = tonumber, string.find, string.sub, string.gsub, string.gmatch

local M = {}

local UNESCAPE = { ["\\\\"] = "\\", ['\\"'] = '"', ["\\n"] = "\n" }

local function labels_of(s)
  local out = {}
  for k, v in gmatch(s, '([%w_]+)="(.-[^\\]?)"') do -- values end at a quote not escaped
    out[k] = gsub(v, '\\[\\"n]', UNESCAPE)
  end
  return out
end

-- Every sample whose metric name starts with prefix (histograms as their _bucket, _sum and
-- _count lines).
function M.samples(prefix)
  local out = {}
  for line in gmatch(chatgw.metrics.render(), "[^\n]+") do
    if sub(line, 1, #prefix) == prefix then
      local name, rest = line:match("^([%w_:]+)(.*)$")
      local labels, value = {}, nil
      if sub(rest, 1, 1) == "{" then
        local e = find(rest, "} ", 1, true)
        if e then
          labels = labels_of(sub(rest, 2, e - 1))
          value = tonumber(sub(rest, e + 2):match("^(%S+)"))
        end
      else
        value = tonumber(rest:match("^%s+(%S+)"))
      end
      if name and value then out[#out + 1] = { name = name, labels = labels, value = value } end
    end
  end
  return out
end

return M
