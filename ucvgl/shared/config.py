"""One settings object for the whole package (environment prefix ``UCVGL_``).

Every room reads configuration from :func:`get_settings`; nothing else reads the
environment. Values can be overridden by environment variables (``UCVGL_WORK_DIR``)
or a ``.env`` file in the working directory.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_API_TOKEN = "change-me"


class Settings(BaseSettings):
    """All configuration of ucvgl. Field names map to ``UCVGL_<NAME>`` variables."""

    model_config = SettingsConfigDict(env_prefix="UCVGL_", env_file=".env", extra="ignore")

    # --- filesystem -------------------------------------------------------------------
    work_dir: Path = Field(
        default=Path("./work"),
        description="Runs, checkpoints, projected images, indexes and the default database.",
    )
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path("./data")],
        description="Datasets may only be registered from below these folders.",
    )

    # --- services -----------------------------------------------------------------------
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means a SQLite file under work_dir.",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker URL (redis://...); empty means an embedded SQLite broker.",
    )
    result_backend: str = Field(default="", description="Celery result backend; empty = none.")

    # --- compute ------------------------------------------------------------------------
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    num_workers: int | None = Field(
        default=None,
        ge=0,
        description="DataLoader worker processes that decode images; unset: "
        "min(8, usable CPUs - 1). Always 0 inside a daemonic process (a Celery prefork "
        "child), which may not have children. 0 decodes on the training thread.",
    )
    loader_prefetch: int = Field(
        default=2, ge=1, description="Batches each DataLoader worker decodes ahead."
    )
    image_cache_mb: float = Field(
        default=1024.0,
        ge=0,
        description="Byte budget (MiB) of decoded images kept in memory by this process, "
        "all datasets together, in shared memory that its DataLoader workers fill and read "
        "(never a copy per worker). Images past the budget are decoded again each time.",
    )
    embedding_cache_dtype: Literal["float16", "float32"] = Field(
        default="float16",
        description="How cached embeddings are stored on disk (and returned, so a cached "
        "and a fresh result agree): float16 halves the files of the L2-normalised "
        "embeddings at a cosine error of about 1e-4.",
    )
    torch_threads: int = Field(
        default=0,
        ge=0,
        description="torch intra-op CPU threads (0 = torch's default). On shared CPUs 1 is "
        "much faster: several processes each using every core slow each other down.",
    )
    ddp_cpu_processes: int = Field(
        default=0,
        ge=0,
        description="On a worker without CUDA, the gloo processes one training job may use "
        "(params.gpus; 0 or 1: one process). For tests of the multi-GPU path on a CPU.",
    )
    weights_dir: Path | None = Field(
        default=None, description="Folder of local backbone weights files (no model hub)."
    )

    # --- API ----------------------------------------------------------------------------
    environment: Literal["development", "production"] = "development"
    api_token: str = Field(default=DEFAULT_API_TOKEN, description="Bearer token for mutations.")
    public_reads: bool = Field(default=True, description="Allow GET endpoints without a token.")
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_batch_files: int = Field(default=32, gt=0)
    max_concurrent_queries_per_client: int = Field(default=4, gt=0)
    query_max_batch: int = Field(
        default=32,
        gt=0,
        description="Images of waiting /query requests merged into one forward on the "
        "server's one torch thread.",
    )
    query_index_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How long /query reuses its database lookup of an index row: a new or "
        "rebuilt index is served at most this many seconds after it is recorded (0: read "
        "the database on every query).",
    )

    # --- reliability --------------------------------------------------------------------
    job_stale_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A RUNNING job whose heartbeat is older than this is marked FAILED "
        "(its worker was lost); retry it to resume from its last checkpoint.",
    )
    reaper_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often the API and each worker look for lost jobs."
    )

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        """Accept ``UCVGL_DATA_ROOTS=/a:/b`` as well as a JSON list."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                import json

                return json.loads(value)
            return [p for p in value.split(":") if p]
        return value

    # --- derived ------------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<work_dir>/ucvgl.sqlite``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.work_dir / 'ucvgl.sqlite').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        """The broker URL, defaulting to kombu's SQLAlchemy transport on a SQLite file."""
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{(self.work_dir / 'broker.sqlite').resolve()}"

    def torch_device(self) -> str:
        """Resolve ``device='auto'`` to 'cuda' when available, else 'cpu'."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def loader_workers(self) -> int:
        """DataLoader workers: ``num_workers``, else min(8, usable CPUs / ranks - 1).

        Ranks: ``LOCAL_WORLD_SIZE`` (set by torchrun for a multi-GPU job), so the ranks of
        one machine share its CPUs instead of each taking all of them.

        A daemonic process (a Celery prefork pool child) always gets 0, whatever
        ``num_workers`` says: it may not start processes of its own (Python refuses with
        "daemonic processes are not allowed to have children").
        """
        import multiprocessing
        import os

        if multiprocessing.current_process().daemon:
            return 0
        if self.num_workers is not None:
            return self.num_workers
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cpus = os.cpu_count() or 1
        try:
            ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        except ValueError:
            ranks = 1
        return max(0, min(8, cpus // ranks - 1))

    def apply_torch_threads(self) -> None:
        """Set torch's CPU thread count from ``torch_threads`` (0 leaves torch's default)."""
        if self.torch_threads > 0:
            import torch

            torch.set_num_threads(self.torch_threads)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
