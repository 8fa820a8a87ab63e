"""HTTP layer: dependencies, documented error responses and the routers."""
