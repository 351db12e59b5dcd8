-- wrk script for GET figures of `make bench`: the request is the URL given
-- to wrk, unchanged; done() prints one BENCH line with the exact latency
-- percentiles (µs) and the error counts, which bench/run.py parses.

function done(summary, latency, requests)
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,' ..
      '"max_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency:percentile(99.9), latency.max, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.status, summary.errors.timeout))
end
