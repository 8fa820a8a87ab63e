-- POST a PNG as multipart/form-data field "file" (path in $BENCH_FILE).
local f = assert(io.open(os.getenv("BENCH_FILE"), "rb"))
local png = f:read("*all")
f:close()
local boundary = "----tinyzoo-bench"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n"
  .. 'Content-Disposition: form-data; name="file"; filename="digit.png"\r\n'
  .. "Content-Type: image/png\r\n\r\n" .. png .. "\r\n--" .. boundary .. "--\r\n"
