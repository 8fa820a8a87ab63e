"""The service layer: validation beyond the schemas, batching and inference for each task."""
