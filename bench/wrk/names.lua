-- POST 16 surnames at once to the batch route as JSON.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"names": ["Nakamura", "Smith", "Kowalski", "Schmidt", "Rossi", "Dubois", "Novak", '
  .. '"Ivanov", "Garcia", "Murphy", "Kim", "Nguyen", "Papadopoulos", "Silva", "Chen", "Haddad"]}'
