-- wrk script for tools/load-test.sh: POSTs {"inputs": SENTENCE} to /predict,
-- cycling through the sentences in $SENTENCES (one per line). wrk's -d
-- bounds the time; $MAX_REQUESTS is a safety cap on the answers (each thread
-- stops after its share). A capped run's rate is not valid, because wrk
-- divides by the full duration, so done() reports capped=1 for the caller
-- to reject. done() prints one RESULT line.

local sentences = {}
for line in io.lines(os.getenv("SENTENCES")) do
  if line ~= "" then sentences[#sentences + 1] = line end
end

local function json_string(s)
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end)
  return '"' .. s .. '"'
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
  threads[#threads + 1] = thread
end

function init(args)
  -- Threads start at different sentences so they do not send the same one.
  next_index = (id - 1) * 97
  answered = 0
  capped = 0
  local total = tonumber(os.getenv("MAX_REQUESTS") or "0")
  local count = tonumber(os.getenv("THREADS") or "1")
  limit = total > 0 and math.ceil(total / count) or 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  next_index = next_index % #sentences + 1
  return wrk.format(nil, "/predict", nil, '{"inputs": ' .. json_string(sentences[next_index]) .. '}')
end

function response(status, headers, body)
  answered = answered + 1
  if limit > 0 and answered >= limit then
    capped = 1
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  local seconds = summary.duration / 1e6
  local capped = 0
  for _, t in ipairs(threads) do
    if t:get("capped") == 1 then capped = 1 end
  end
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.2f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f errors=%d non2xx=%d capped=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    errors, e.status, capped))
end
