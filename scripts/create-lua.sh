#!/usr/bin/env bash
# Prints a wrk script that creates one job per request (a yearly schedule, so nothing fires),
# with API key $1 and job names "$2-<n>": shared by the scripts that load the write path.
#
#   scripts/create-lua.sh "$RAFTCRON_API_KEY" ab >create.lua
set -euo pipefail
cat <<LUA
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $1"
request = function()
  n = n + 1
  local body = string.format('{"name":"$2-%08d","url":"http://127.0.0.1:9/$2","method":"POST","cron_expression":"0 0 1 1 *"}', n)
  return wrk.format(nil, "/api/v1/jobs", nil, body)
end
LUA
