"""Benchmarks of the service's preprocessing on realistic inputs."""
