"""The service's settings: one typed class, environment variables prefixed ``TINYZOO_``."""

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything an operator can set; see the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="TINYZOO_", env_file=None, extra="ignore")

    device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto | cpu | cuda | cuda:N"
    )
    weights_dir: Path = Field(PROJECT / "weights", description="one folder per model")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's)")
    preprocess_threads: int | None = Field(
        None, ge=1, description="threads decoding images (default: the number of CPU cores)"
    )
    fold: bool = Field(
        True,
        description="serve the Inception net as the matrix products its affine layers fold "
        "into (same function, about 2.5x faster); false: layer by layer",
    )
    max_batch_size: int = Field(64, ge=1, le=1024, description="1 turns batching off")
    max_wait_ms: float = Field(2.0, ge=0, le=1000, description="batch fill wait")
    max_queue: int = Field(1024, ge=1, description="queued items per model before 429")
    request_timeout_s: float = Field(30.0, gt=0, description="deadline for one prediction")
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="request body limit")
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="request line and headers (python -m app): 431 beyond, then the connection "
        "is closed",
    )
    client_timeout_s: float = Field(
        60.0,
        gt=0,
        description="python -m app closes a connection whose request head takes longer than "
        "this, or on which nothing has moved either way for this long; keep it above "
        "request_timeout_s",
    )
    max_requests_in_progress: int = Field(
        64,
        ge=1,
        description="python -m app: whole requests one worker works on at once (a batch's "
        "worth); beyond it a request waits unread, first come first served, and one that "
        "waits longer than intake_wait_s is answered 503 with Retry-After. Health, readiness "
        "and metrics probes never wait",
    )
    intake_wait_s: float = Field(
        5.0, gt=0, description="longest a request waits for a place (max_requests_in_progress)"
    )
    max_image_pixels: int = Field(50_000_000, ge=1, description="decoded image size limit")
    max_decoded_bytes: int = Field(
        192 * 1024 * 1024,
        ge=1024,
        description="memory decoding one upload may take (413 above), known from its header "
        "before any pixel is decoded: the frame OpenCV returns (width x height x channels kept "
        "x bytes per sample; JPEGs at their reduced scale) twice, as OpenCV holds it; nothing "
        "after decoding copies the frame at full size",
    )
    max_generate_chars: int = Field(
        2000, ge=1, le=100_000, description="most characters one generation may ask for"
    )
    max_generations: int = Field(
        4, ge=1, description="generations run at once per worker, each in a thread of its own"
    )
    max_generation_queue: int = Field(
        16, ge=0, description="generations waiting for a slot before 429"
    )
    max_explanations: int = Field(
        2,
        ge=1,
        description="explanations (/digit/explain, /classify-name/explain) computed at once per "
        "worker, each in a worker thread",
    )
    max_explanation_queue: int = Field(
        8, ge=0, description="explanations waiting for a slot before 429"
    )
    explain_digit_steps: int = Field(
        128,
        ge=1,
        le=4096,
        description="integrated-gradients steps for a digit (each a forward and backward pass)",
    )
    explain_name_steps: int = Field(
        128, ge=1, le=4096, description="integrated-gradients steps for a name"
    )
    explain_batch_size: int = Field(
        64,
        ge=1,
        le=1024,
        description="integration steps run through the net together (bounds an explanation's "
        "memory)",
    )
    api_key: str | None = Field(None, description="when set, required as a Bearer token")
    admin_key: str | None = Field(
        None,
        description="when set, the model repository routes (/v2/repository/...) take it as a "
        "Bearer token; unset, they answer 403",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='browser origins allowed to call the API, as JSON: ["https://a.example"]',
    )
    docs_enabled: bool = Field(True, description="serve /docs, /redoc and /openapi.json")
    memory_trim_s: float = Field(
        30.0, ge=0, description="seconds between returns of freed heap memory to the OS; 0: never"
    )
    workers: int = Field(
        1,
        ge=1,
        description="server processes (python -m app), each with its own models and batchers",
    )
    host: str = Field("127.0.0.1", description="address python -m app listens on")
    port: int = Field(8000, ge=0, le=65535, description="port python -m app listens on")
    graceful_shutdown_s: int | None = Field(
        None, ge=0, description="on SIGTERM, seconds left to requests in flight (default: no limit)"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: one JSON object per line"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")


@functools.cache
def from_environment() -> Settings:
    """This process's settings, read from the environment once: the launcher, the connection
    guard and the app of a worker process all take them from here."""
    return Settings()
