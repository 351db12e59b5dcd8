-- wrk script for `POST /system-api/users` in `make bench`: one user per
-- request with an email unique across threads and runs: the run tag given
-- after `--`, the wrk thread number and a per-thread counter. done() prints
-- the BENCH line of get.lua.

local counter = 0
local run = "r"
local nthreads = 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("tid", nthreads)
end

function init(args)
   run = args[1] or run
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local body = string.format(
      '{"name":"Bench User %d","email":"u%s-%d-%d@bench.example"}',
      counter, run, tid or 0, counter)
   return wrk.format("POST", nil, nil, body)
end

function done(summary, latency, requests)
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,' ..
      '"max_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency:percentile(99.9), latency.max, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.status, summary.errors.timeout))
end
