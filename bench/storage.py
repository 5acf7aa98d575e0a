"""Frame store encodings compared: bytes per frame and read + decode speed per core.

Writes the same face crops as raw uint8 and as JPEG (quality 90 and 95) through
:class:`aunet.data.store_writer.FrameStoreWriter`, then reads them back in random order through
:class:`aunet.data.store.FrameStore` (what training does) in one process, and reports

- bytes per frame, from the file size (so HDF5 overhead included);
- frames/s read + decoded per core (warm page cache: the best of ``--repeats`` passes), and
  the same for decoding alone from memory;
- the size of a DISFA-sized store (130,000 frames), the disk bandwidth one core's worth of
  reading needs, and the frames/s a disk of ``--disk-mib-s`` delivers when the store does not
  fit the page cache, for each encoding;
- JPEG's PSNR against the raw pixels;
- for scale, the CPU time the training augmentation spends on a frame.

The crops are 256 x 256 face crops of ``skimage.data.astronaut()`` with the default margin,
jittered like tracked video frames (shift, scale, gain) and with sensor noise, so that their
detail, and hence JPEG's size and decode time, is that of real face crops.

Run: ``python -m bench.storage [--frames 1000]`` (``--quick``: 200 frames, 2 passes); the
figures go to ``bench/BENCHMARKS.md`` ("Storage") and ``bench/results/storage.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from skimage.data import astronaut

from aunet.data.store import FrameStore, decode_jpeg, encode_jpeg
from aunet.data.store_writer import FrameStoreWriter
from aunet.faces.crop import DEFAULT_MARGIN, DEFAULT_SIZE, CropBox, crop_face
from bench.common import machine, record

DISFA_FRAMES = 130_000
#: dlib's 68-point bounding box of the astronaut's face: x 179-272, y 87-178.
FACE_CENTRE = (225.5, 132.5)
FACE_EXTENT = 93.0
ENCODINGS = (("raw", None), ("jpeg", 90), ("jpeg", 95))
RESULTS = Path(__file__).with_name("results") / "storage.json"


def face_crops(n: int, size: int = DEFAULT_SIZE, seed: int = 0) -> np.ndarray:
    """``n`` jittered, noisy ``size x size`` RGB crops of the astronaut's face."""
    rng = np.random.default_rng(seed)
    image = astronaut().astype(np.float32)
    side = FACE_EXTENT * (1 + DEFAULT_MARGIN)
    crops = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        box = CropBox(
            FACE_CENTRE[0] + rng.uniform(-0.1, 0.1) * side,
            FACE_CENTRE[1] + rng.uniform(-0.1, 0.1) * side,
            side * rng.uniform(0.9, 1.1),
        )
        frame = image * rng.uniform(0.9, 1.1) + rng.normal(0, 2.0, image.shape)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        crops[i] = crop_face(frame, np.zeros((1, 2)), size, box=box).image
    return crops


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of two uint8 image stacks."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def measure(
    crops: np.ndarray,
    folder: Path,
    encoding: str,
    quality: int | None,
    repeats: int,
    disk_mib_s: float,
) -> dict:
    """Write ``crops`` in one encoding, read them back, and return the figures.

    Read speeds are frames per CPU second of this process (``time.process_time``), the best of
    ``repeats`` passes: per-core figures that other jobs on a shared machine disturb little. The
    write speed is wall-clock (one pass, the file's I/O included).
    """
    path = folder / f"{encoding}{quality or ''}.h5"
    start = time.perf_counter()
    with FrameStoreWriter(
        path, "bench", ("AU01",), crops.shape[1], encoding=encoding, jpeg_quality=quality or 95
    ) as writer:
        for block in range(0, len(crops), 64):
            chunk = crops[block : block + 64]
            writer.append(
                images=chunk,
                landmarks=np.zeros((len(chunk), 68, 2)),
                au=np.zeros((len(chunk), 1)),
                subject=["S"] * len(chunk),
                frame=np.arange(len(chunk)),
            )
    write_s = time.perf_counter() - start
    store = FrameStore(path)
    order = np.random.default_rng(1).permutation(len(crops))
    best = np.inf
    for _ in range(repeats):
        start = time.process_time()
        for i in order:
            store.image(int(i))
        best = min(best, time.process_time() - start)
    decoded = np.stack([store.image(i) for i in range(len(crops))])
    store.close()
    bytes_per_frame = path.stat().st_size / len(crops)
    result = {
        "encoding": encoding if quality is None else f"jpeg q{quality}",
        "bytes_per_frame": round(bytes_per_frame),
        "disfa_store_gib": round(bytes_per_frame * DISFA_FRAMES / 2**30, 2),
        "read_decode_fps_per_core": round(len(crops) / best),
        "disk_mib_per_s_at_that_rate": round(bytes_per_frame * len(crops) / best / 2**20, 1),
        "fps_from_uncached_disk": round(disk_mib_s * 2**20 / bytes_per_frame),
        "write_encode_fps": round(len(crops) / write_s),
        "psnr_db": None if quality is None else round(psnr(decoded, crops), 2),
    }
    if quality is not None:
        buffers = [encode_jpeg(crop, quality) for crop in crops]
        best = np.inf
        for _ in range(repeats):
            start = time.process_time()
            for buffer in buffers:
                decode_jpeg(buffer)
            best = min(best, time.process_time() - start)
        result["decode_only_fps_per_core"] = round(len(crops) / best)
    return result


def augmentation_ms(crops: np.ndarray, repeats: int) -> float:
    """CPU ms per frame of the training augmentation (for scale: a worker's other cost)."""
    from aunet.data.augment import TrainAugmentation

    augment = TrainAugmentation(crops.shape[1])
    points = np.random.default_rng(2).uniform(60, 200, (68, 2)).astype(np.float32)
    best = np.inf
    for _ in range(repeats):
        start = time.process_time()
        for crop in crops:
            augment(crop, points)
        best = min(best, time.process_time() - start)
    return 1e3 * best / len(crops)


def main(argv: Sequence[str] | None = None) -> None:
    """Measure every encoding, print and record the figures (BENCHMARKS.md, results JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="200 frames, 2 passes; the results JSON is left alone"
    )
    parser.add_argument("--frames", type=int, help="default 1000 (200 with --quick)")
    parser.add_argument("--repeats", type=int, help="default 5 (2 with --quick)")
    parser.add_argument(
        "--disk-mib-s",
        type=float,
        default=500.0,
        help="sequential read speed of the disk a store may not fit the page cache of "
        "(default: a SATA laptop SSD, %(default)s MiB/s)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.frames = args.frames or (200 if args.quick else 1000)
    args.repeats = args.repeats or (2 if args.quick else 5)
    cv2.setNumThreads(1)  # per-core figures: a DataLoader worker decodes on one core
    crops = face_crops(args.frames)
    with tempfile.TemporaryDirectory() as folder:
        results = [
            measure(crops, Path(folder), encoding, quality, args.repeats, args.disk_mib_s)
            for encoding, quality in ENCODINGS
        ]
    command = (
        f"python -m bench.storage --frames {args.frames} --repeats {args.repeats} "
        f"--disk-mib-s {args.disk_mib_s:g}"
    )
    augment = augmentation_ms(crops[:300], args.repeats)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "command": command,
            "machine": machine(),
            "results": results,
            "train_augmentation_ms_per_frame": round(augment, 3),
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    for (_, quality), result in zip(ENCODINGS, results, strict=True):
        record(
            "Storage",
            {
                "encoding": result["encoding"],
                "bytes/frame": f"{result['bytes_per_frame']:,}",
                f"{DISFA_FRAMES:,}-frame store": f"{result['disfa_store_gib']} GiB",
                "read+decode/s per core": f"{result['read_decode_fps_per_core']:,}",
                "decode only/s per core": (
                    f"{result['decode_only_fps_per_core']:,}" if quality is not None else "-"
                ),
                f"frames/s from a {args.disk_mib_s:g} MiB/s disk": (
                    f"{result['fps_from_uncached_disk']:,}"
                ),
                "encode+write/s": f"{result['write_encode_fps']:,}",
                "PSNR": "lossless" if result["psnr_db"] is None else f"{result['psnr_db']} dB",
            },
            command=command,
        )
    record(
        "Storage",
        {"for scale: TrainAugmentation of one 256 x 256 crop, CPU": f"{augment:.2f} ms"},
        command=command,
    )


if __name__ == "__main__":
    main()
