-- Shared by the wrk scripts of bench/http_bench.sh: the vocabulary of words.txt, random facts
-- and queries drawn from it, and the error accounting.
--
-- wrk on its own counts socket errors (connect, read, write, timeout) and responses with a
-- status of 400 or more; a 1xx or 3xx would pass as a success. Here every response outside
-- 200..299 counts as an error, per thread, and done() prints one machine-readable line that
-- http_bench.sh parses:
--   RESULT requests=N duration_us=N rps=F p50_us=N p99_us=N non2xx=N socket_errors=N codes=...
-- where socket_errors = connect + read + write + timeout and codes lists the non-2xx statuses
-- seen ("404:3,503:1", or "-").
--
-- Each script loads this file with dofile() and calls install(request_fn), which defines the
-- globals wrk looks for (setup, init, response, done, and request when request_fn is given).
-- wrk runs a separate Lua state per thread plus one for setup() and done(); this file is loaded
-- in each of them.

local M = {}

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

-- {section = {items}} from words.txt (format described there).
local function read_words(path)
  local sections, current = {}, nil
  local file = assert(io.open(path, "r"), "cannot open " .. path)
  for raw in file:lines() do
    local line = raw:match("^%s*(.-)%s*$")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local name = line:match("^%[(.+)%]$")
      if name then
        current = name
        sections[current] = {}
      elseif current then
        table.insert(sections[current], line)
      else
        error(path .. ": item '" .. line .. "' before any [section]")
      end
    end
  end
  file:close()
  for _, s in ipairs({ "names", "verbs", "objects", "places", "times" }) do
    assert(sections[s] and #sections[s] > 0, path .. ": no items in section " .. s)
  end
  return sections
end

local words = read_words(dir .. "words.txt")

local function pick(section)
  local items = words[section]
  return items[math.random(#items)]
end

-- A random fact in the shape load_memories.py loads.
function M.fact()
  local name = pick("names")
  return name:sub(1, 1):upper() .. name:sub(2) .. " " .. pick("verbs") .. " " .. pick("objects")
    .. " " .. pick("places") .. " " .. pick("times") .. "."
end

-- A random question about the loaded facts; three slots each, so about 150,000 distinct ones
-- per template and the encoder's cache (4,096 entries) rarely answers.
function M.query()
  local template = math.random(3)
  if template == 1 then
    return "where did " .. pick("names") .. " keep " .. pick("objects") .. " " .. pick("times")
  elseif template == 2 then
    return "what did " .. pick("names") .. " do " .. pick("places") .. " " .. pick("times")
  end
  return "who " .. pick("verbs") .. " " .. pick("objects") .. " " .. pick("places")
end

-- A JSON string literal (the vocabulary has no control characters; quotes and backslashes are
-- escaped all the same).
function M.json_string(s)
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

function M.post_json(path, body)
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
end

function M.install(request_fn)
  local threads = {}

  function setup(thread)
    thread:set("thread_id", #threads + 1)
    table.insert(threads, thread)
  end

  function init(_)
    -- Different draws per thread and per run; thread_id was set by setup().
    math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
    non2xx = 0
    codes = {}
  end

  if request_fn then
    request = request_fn
  end

  function response(status, _, _)
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
      codes[status] = (codes[status] or 0) + 1
      -- A string, because thread:get() copies plain values out of the thread's state.
      local parts = {}
      for code, n in pairs(codes) do
        table.insert(parts, code .. ":" .. n)
      end
      codes_text = table.concat(parts, ",")
    end
  end

  function done(summary, latency, _)
    local non2xx_total, code_list = 0, {}
    for _, thread in ipairs(threads) do
      non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
      local text = thread:get("codes_text")
      if text and text ~= "" then
        table.insert(code_list, text)
      end
    end
    local e = summary.errors
    local socket_errors = e.connect + e.read + e.write + e.timeout
    local seconds = summary.duration / 1e6
    io.write(string.format(
      "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d non2xx=%d "
        .. "socket_errors=%d codes=%s\n",
      summary.requests, summary.duration, summary.requests / seconds,
      latency:percentile(50), latency:percentile(99), non2xx_total, socket_errors,
      #code_list > 0 and table.concat(code_list, ",") or "-"))
  end
end

return M
