-- POST digit images as the request body itself, with the image's own Content-Type, cycling
-- through the files $BENCH_UPLOADS/0.$BENCH_EXT .. <$BENCH_COUNT - 1>.$BENCH_EXT, one per request.
local ext = os.getenv("BENCH_EXT") or "png"
local headers = { ["Content-Type"] = ext == "jpg" and "image/jpeg" or "image/png" }
local bodies = {}
for i = 0, tonumber(os.getenv("BENCH_COUNT")) - 1 do
  local f = assert(io.open(os.getenv("BENCH_UPLOADS") .. "/" .. i .. "." .. ext, "rb"))
  bodies[#bodies + 1] = f:read("*all")
  f:close()
end
local n = 0

request = function()
  n = n % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[n])
end
