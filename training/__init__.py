"""Offline training recipes that write the committed checkpoints under ``weights/``."""
