"""The training data pipeline per worker: HDF5 read + decode + augmentation + collate at 256 px.

Writes the same face crops (:func:`bench.storage.face_crops`: jittered, noisy 256 x 256 crops of
``skimage.data.astronaut()``, so that JPEG's size and decode time are those of real crops) with
landmarks spread over the face and 12 intensities into a frame store through
:class:`aunet.data.store_writer.FrameStoreWriter`, in the chosen encoding (JPEG q95, the default)
and the alternative (raw), then loads them as training does:
:class:`aunet.data.dataset.FrameDataset` with :class:`aunet.data.augment.TrainAugmentation` and
:func:`aunet.data.dataset.collate_frames`, in shuffled batches of 48. Reported per encoding:

* in-process (one torch thread, as in a worker): images per CPU-second of this process over
  one pass, and the CPU milliseconds
  per image of each stage (read + decode, augmentation, collate), each timed over the pass;
* one worker (``DataLoader(num_workers=1)``, what each of ``data.num_workers`` does): images
  per CPU-second of the worker (its own ``getrusage`` CPU time, from the second batch on, so
  start-up is excluded), the images/s that reach the main process (wall clock, which other jobs
  on a shared machine slow down), and the worker's peak resident set (``ru_maxrss``, which
  counts the pages it shares with the parent after the fork) and its private memory at the end
  (``/proc/self/smaps_rollup``: what each extra worker adds).

Target (issue 7): at least 500 images/s per core, so that 8 workers outrun a GPU step.

Run ``python -m bench.data_pipeline`` (``--quick``: 240 frames instead of 960); figures go to
``bench/BENCHMARKS.md`` under "Data pipeline".
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from aunet.data.augment import TrainAugmentation
from aunet.data.dataset import FrameDataset, collate_frames
from aunet.data.store_writer import FrameStoreWriter
from bench.common import record
from bench.heatmaps import AUS, random_labels
from bench.storage import face_crops

ENCODINGS = ("jpeg", "raw")  # the chosen one first


def write_store(path: Path, crops: np.ndarray, encoding: str) -> Path:
    """A frame store of ``crops`` with random landmarks and intensities."""
    landmarks, intensities = random_labels(len(crops))
    landmarks *= crops.shape[1] / 256
    with FrameStoreWriter(path, "disfa", AUS, crops.shape[1], encoding=encoding) as writer:
        writer.append(
            images=crops,
            landmarks=landmarks,
            au=intensities,
            subject=["SN001"] * len(crops),
            frame=np.arange(len(crops)),
        )
    return path


def private_kib() -> int:
    """This process's private (unshared) memory in KiB, from ``/proc/self/smaps_rollup``."""
    fields = Path("/proc/self/smaps_rollup").read_text().splitlines()
    return sum(int(line.split()[1]) for line in fields if line.startswith("Private_"))


def collate_with_usage(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """:func:`collate_frames`, plus the collating process's CPU seconds and memory so far."""
    batch = collate_frames(samples)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    batch["cpu_s"] = torch.tensor(usage.ru_utime + usage.ru_stime, dtype=torch.float64)
    batch["max_rss_kib"] = torch.tensor(usage.ru_maxrss)
    batch["private_kib"] = torch.tensor(private_kib())
    return batch


def in_process(dataset: FrameDataset, batch_size: int) -> dict[str, float]:
    """Images per CPU-second of one shuffled pass in this process, and CPU ms/image per stage."""
    order = np.random.default_rng(0).permutation(len(dataset))
    store, transform = dataset.store, dataset.transform
    stages = dict.fromkeys(("read+decode", "augment", "collate"), 0.0)
    for start in range(0, len(order), batch_size):
        samples = []
        for item in order[start : start + batch_size]:
            row = int(dataset.indices[item])
            tick = time.process_time()
            image, landmarks = store.image(row), store.landmarks(row)
            au = store.au(row)
            tock = time.process_time()
            image, landmarks = transform(image, landmarks)
            stages["read+decode"] += tock - tick
            stages["augment"] += time.process_time() - tock
            samples.append({"image": image, "landmarks": landmarks, "au": au, "index": row})
        tick = time.process_time()
        collate_frames(samples)
        stages["collate"] += time.process_time() - tick
    total = sum(stages.values())
    return {
        "images_per_cpu_s": len(order) / total,
        **{stage: 1e3 * seconds / len(order) for stage, seconds in stages.items()},
    }


def one_worker(dataset: FrameDataset, batch_size: int) -> dict[str, float]:
    """One DataLoader worker: images per worker CPU-second, wall images/s, memory."""
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=1,
        collate_fn=collate_with_usage, drop_last=True,
    )  # fmt: skip
    batches = iter(loader)
    first = next(batches)  # start-up (fork, store opening) excluded from here on
    start = time.perf_counter()
    images, last = 0, first
    for last in batches:
        images += len(last["image"])
    wall = time.perf_counter() - start
    return {
        "images_per_worker_cpu_s": images / float(last["cpu_s"] - first["cpu_s"]),
        "images_per_s_wall": images / wall,
        "max_rss_mib": float(last["max_rss_kib"]) / 1024,
        "private_mib": float(last["private_kib"]) / 1024,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Measure both encodings, print and record the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="240 frames instead of 960")
    parser.add_argument("--frames", type=int, help="frames in the store (default 960)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=48)
    args = parser.parse_args(argv)
    frames = args.frames or (240 if args.quick else 960)
    # Per-core figures, as in a DataLoader worker (which runs torch on one thread); two threads
    # here would also make every collate wait for a core that other jobs may hold (see
    # bench/BENCHMARKS.md, "Heatmap targets").
    torch.set_num_threads(1)
    if frames < 3 * args.batch_size:
        parser.error("--frames must hold at least three batches (start-up batch + two timed)")
    crops = face_crops(frames, args.image_size)
    command = (
        f"python -m bench.data_pipeline --frames {frames} --image-size {args.image_size} "
        f"--batch-size {args.batch_size}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for encoding in ENCODINGS:
            path = write_store(Path(folder) / f"{encoding}.h5", crops, encoding)
            dataset = FrameDataset(path, transform=TrainAugmentation(args.image_size))
            results[encoding] = {**in_process(dataset, args.batch_size),
                                 **one_worker(dataset, args.batch_size)}  # fmt: skip
            dataset.store.close()
    for encoding, result in results.items():
        label = "JPEG q95 (chosen)" if encoding == "jpeg" else "raw (alternative)"
        record(
            "Data pipeline",
            {
                "store": f"{label}, {frames} frames, batch {args.batch_size}",
                "one worker": f"{result['images_per_worker_cpu_s']:.0f} images per CPU-second "
                f"({result['images_per_s_wall']:.0f} images/s wall)",
                "in process": f"{result['images_per_cpu_s']:.0f} images per CPU-second",
                "CPU ms/image": ", ".join(
                    f"{stage} {result[stage]:.2f}"
                    for stage in ("read+decode", "augment", "collate")
                ),
                "worker memory": f"peak RSS {result['max_rss_mib']:.0f} MiB, "
                f"private {result['private_mib']:.0f} MiB",
                "target 500/s per core": "met"
                if result["images_per_worker_cpu_s"] >= 500
                else "not met",
            },
            command=command,
        )
    return results


if __name__ == "__main__":
    main()
