-- GET of the URL given to wrk (nginx's "/" or mann's /health): wrk's own static request, with
-- every non-2xx response counted as an error (common.lua).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

common.install(nil)
