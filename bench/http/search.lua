-- POST /search, top 5, with a random question each time (common.lua), so the encoder's cache
-- rarely answers and every request encodes its query and scores the whole bank.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

common.install(function()
  return common.post_json("/search",
    '{"query":' .. common.json_string(common.query()) .. ',"top_k":5}')
end)
