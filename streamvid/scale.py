"""Indexing many videos on Ray (``streamvid index VIDEO... --catalog DIR --ray local|auto|ADDRESS``).

Ray is an optional extra (``pip install 'streamvid[ray]'``): it is imported here, lazily, and
nowhere else; without it ``--ray`` is a one-line error (exit 2) and everything else works.

Design. The unit of work is a whole video: one :class:`IndexWorker` actor takes a video, decodes
it (PyAV, on a thread of the actor's process, so decoding overlaps encoding as in ``watch``),
encodes its frames, updates that video's Δ-Mem memory and saves the memory atomically into the
catalog folder (:func:`streamvid.catalog.index_video`, the same ingest as ``watch``). The driver
keeps ``--workers`` actors busy, giving each the next video as soon as it finishes one (a slow
video holds up no one), and records each result in ``catalog.json`` as it comes back
(:func:`streamvid.catalog.record`), so a crash loses no finished video and a re-run skips them.

- Actors, not tasks, so that each worker creates its encoder once (CLIP weights load in seconds)
  and keeps it for all its videos. Each actor reserves one CPU (``num_cpus=1``, and it limits
  torch and OpenCV to one thread each, so N workers use N cores); when the cluster has GPUs and
  the encoder is CLIP, each actor also reserves one GPU (``num_gpus=1``) and encodes there (the
  encoder is created on the actor, which sees only its own GPU). The classic encoder is OpenCV on
  the CPU and gets no GPU.
- Frames never leave the actor that decodes them. Splitting decode (CPU tasks) from encode (GPU
  actors) would ship every sampled frame through the object store (about 1 MB at 640 px: 7 GB
  per hour of video at 2 fps) for a stage that is not the bottleneck, and a memory's update is
  sequential in time anyway, so one video is one actor's job from start to end. Many videos at
  once are the parallelism.
- A worker that dies (out of memory, a crash in a decoder) is restarted once and the video
  retried once; a video that still fails is reported as failed and the others go on.
- Workers write snapshots straight into the catalog folder: on a real cluster it must be on a
  filesystem every node mounts at the same path (NFS, a cloud filestore...), and the videos
  too. Only the driver writes ``catalog.json``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence

from streamvid.catalog import Catalog, IndexJob, IndexResult, index_video, record
from streamvid.errors import InputError, one_line

log = logging.getLogger(__name__)

RAY_MISSING = "ray is not installed: pip install 'streamvid[ray]'"
ENV_PASSED = ("STREAMVID_", "HF_HUB_OFFLINE", "TRITON_INTERPRET")
"""Environment variables (prefixes) the driver hands to its workers."""


def import_ray():
    """The ``ray`` module, or an InputError (exit 2) saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


@contextlib.contextmanager
def ray_session(mode: str, workers: int | None = None, *, quiet: bool = False) -> Iterator:
    """Connect to Ray for the duration of the block → the ``ray`` module.

    ``mode``: ``"local"`` starts a cluster on this machine with ``workers`` CPUs (default: all
    cores) and stops it afterwards; ``"auto"`` joins the cluster this machine belongs to (``ray
    start`` ran here); anything else is the address of a cluster's head (``HOST:6379``, or
    ``ray://HOST:10001`` for Ray Client). A process already connected (a notebook, a test) is used
    as it is and left connected.
    """
    ray = import_ray()
    if ray.is_initialized():
        log.info("using the Ray connection this process already has")
        yield ray
        return
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PASSED)}
    common = {"logging_level": logging.WARNING, "log_to_driver": not quiet,
              "runtime_env": {"env_vars": env} if env else None}
    try:
        if mode == "local":
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, **common)
        else:
            ray.init(address="auto" if mode == "auto" else mode, **common)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = "a running Ray cluster on this machine" if mode == "auto" else f"the Ray cluster at {mode}"
        msg = " ".join(str(e).split())[:300]
        raise InputError(f"cannot connect to {where}: {msg}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


class IndexWorker:
    """The Ray actor behind ``index --ray`` (see the module docstring): creates its encoder once
    from the driver's encoder config, then indexes one video per :meth:`index` call."""

    def __init__(self, encoder_cfg: dict, root: str) -> None:
        import cv2
        import torch

        torch.set_num_threads(1)  # an actor holds one CPU
        cv2.setNumThreads(1)
        self.root = root
        self.encoder = None
        self.error: str | None = None
        try:
            from streamvid.models.factory import encoder_from_config

            self.encoder = encoder_from_config(encoder_cfg)  # on this actor's GPU when it has one
        except Exception as e:  # noqa: BLE001 - reported with every video this worker is given
            self.error = f"the worker cannot create the {encoder_cfg.get('name')} encoder: {one_line(e)}"

    def index(self, job: IndexJob) -> IndexResult:
        if self.encoder is None:
            return IndexResult(job.video, "failed", job.id, error=self.error)
        return index_video(job, self.root, self.encoder)


def plan_workers(ray, encoder_cfg: dict, workers: int | None) -> tuple[int, bool]:
    """How many workers, and whether each gets a GPU: GPUs when the cluster has some and the
    encoder can use them (CLIP); as many workers as GPUs then, else as CPUs, unless ``workers``."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
    use_gpu = gpus > 0 and encoder_cfg.get("name") == "clip"
    n = workers or (gpus if use_gpu else cpus)
    return max(1, n), use_gpu


def run_on_ray(ray, catalog: Catalog, jobs: Sequence[IndexJob], encoder_cfg: dict, *, workers: int,
               use_gpu: bool = False, on_result: Callable[[IndexResult], None] | None = None) -> list[IndexResult]:
    """Index ``jobs`` on the connected Ray cluster with ``workers`` actors, one GPU each with
    ``use_gpu`` (:func:`plan_workers` decides both; see the module docstring); each result is
    recorded in the catalog and passed to ``on_result`` as it arrives."""
    if not jobs:
        return []
    n = max(1, min(workers, len(jobs)))
    log.info("indexing %d videos on Ray with %d workers%s", len(jobs), n, " (1 GPU each)" if use_gpu else "")
    actor_cls = ray.remote(IndexWorker).options(num_cpus=1, num_gpus=1 if use_gpu else 0, max_restarts=1,
                                                max_task_retries=1)

    def start():
        return actor_cls.remote(encoder_cfg, catalog.root)

    pending = collections.deque(jobs)
    inflight: dict = {}  # ObjectRef → (actor, job)
    actors = [start() for _ in range(n)]
    for actor in actors:
        if pending:
            job = pending.popleft()
            inflight[actor.index.remote(job)] = (actor, job)
    results = []
    try:
        while inflight:
            done, _ = ray.wait(list(inflight), num_returns=1)
            ref = done[0]
            actor, job = inflight.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker died twice on it, or cannot be reached
                first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
                result = IndexResult(job.video, "failed", job.id, error=f"the Ray worker failed: {first.strip()}")
                if isinstance(e, ray.exceptions.RayActorError):
                    with contextlib.suppress(Exception):
                        ray.kill(actor)
                    actor = start()
                    actors.append(actor)
            result = record(catalog, result)
            results.append(result)
            if on_result is not None:
                on_result(result)
            if pending:
                job = pending.popleft()
                inflight[actor.index.remote(job)] = (actor, job)
    finally:
        for ref in inflight:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
    return results
