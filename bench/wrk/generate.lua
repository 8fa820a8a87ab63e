-- POST a plain (not streamed) generation of 200 characters as JSON.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"prompt": "ROMEO:", "max_chars": 200}'
