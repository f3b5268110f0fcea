-- wrk script: a unique path per request, so every response is a cache miss.
-- Arguments (after --): PREFIX (e.g. /30k or /1m) and RUN (a unique run id).
-- Each thread gets its own id so paths stay unique across threads.
local counter = 1
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  prefix = args[1] or "/30k"
  run = args[2] or tostring(os.time())
  n = 0
end

function request()
  n = n + 1
  return wrk.format("GET", prefix .. "/" .. run .. "/" .. tid .. "/" .. n .. ".webp")
end
