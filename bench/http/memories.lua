-- POST /memories with a fresh random fact each time (common.lua), so the write head does real
-- work: a nearest-neighbour scan, an encoding that the cache cannot answer and a durable commit.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

common.install(function()
  return common.post_json("/memories", '{"content":' .. common.json_string(common.fact()) .. "}")
end)
