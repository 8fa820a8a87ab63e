"""tinyzoo's HTTP service: typed endpoints over the committed checkpoints."""
