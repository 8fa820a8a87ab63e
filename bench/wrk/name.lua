-- POST one surname as JSON.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"name": "Nakamura", "top_k": 3}'
