-- wrk script for `POST /order-service/orders` in `make bench` (and for the
-- hello-world POST it is compared with): one order per request, the user id
-- cycling over USERS ids from FIRST_USER so the orders spread over many
-- invoices. Arguments after `--`: FIRST_USER USERS (defaults 1000000 1000).
-- done() prints the BENCH line of get.lua.

local counter = 0
local first_user, users = 1000000, 1000
local nthreads = 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("tid", nthreads)
end

function init(args)
   first_user = tonumber(args[1] or first_user)
   users = tonumber(args[2] or users)
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local user = first_user + (counter * 7 + (tid or 0) * 131) % users
   local body = string.format(
      '{"user_id":%d,"amount":19.99,"description":"bench order %d-%d"}', user, tid or 0, counter)
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
