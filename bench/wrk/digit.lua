-- POST digit images as multipart/form-data field "file", cycling through the PNGs
-- $BENCH_UPLOADS/0.png .. $BENCH_UPLOADS/<$BENCH_COUNT - 1>.png, one per request.
local boundary = "----tinyzoo-bench"
local headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
local bodies = {}
for i = 0, tonumber(os.getenv("BENCH_COUNT")) - 1 do
  local f = assert(io.open(os.getenv("BENCH_UPLOADS") .. "/" .. i .. ".png", "rb"))
  local png = f:read("*all")
  f:close()
  bodies[#bodies + 1] = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="file"; filename="digit.png"\r\n'
    .. "Content-Type: image/png\r\n\r\n" .. png .. "\r\n--" .. boundary .. "--\r\n"
end
local n = 0

request = function()
  n = n % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[n])
end
