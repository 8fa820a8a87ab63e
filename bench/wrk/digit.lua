-- POST digit images as multipart/form-data field "file", cycling through the files
-- $BENCH_UPLOADS/0.$BENCH_EXT .. $BENCH_UPLOADS/<$BENCH_COUNT - 1>.$BENCH_EXT, one per request.
local boundary = "----tinyzoo-bench"
local headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
local ext = os.getenv("BENCH_EXT") or "png"
local media = ext == "jpg" and "image/jpeg" or "image/png"
local bodies = {}
for i = 0, tonumber(os.getenv("BENCH_COUNT")) - 1 do
  local f = assert(io.open(os.getenv("BENCH_UPLOADS") .. "/" .. i .. "." .. ext, "rb"))
  local data = f:read("*all")
  f:close()
  bodies[#bodies + 1] = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="file"; filename="digit.' .. ext .. '"\r\n'
    .. "Content-Type: " .. media .. "\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n"
end
local n = 0

request = function()
  n = n % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[n])
end
