-- wrk script: a unique path per request, so every response is a cache miss.
-- Arguments (after --): TEMPLATE (a path with {} where the unique part goes, e.g. /30k/{}.webp)
-- and RUN (a unique run id). Each thread gets its own id so paths stay unique across threads.
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  template = args[1] or "/30k/{}.webp"
  run = args[2] or tostring(os.time())
  n = 0
end

function request()
  n = n + 1
  local unique = run .. "-" .. tid .. "-" .. n
  return wrk.format("GET", (template:gsub("{}", unique)))
end
