"""Read back a W&B run's records from its offline run file, as W&B's servers would receive them.

The ``run-<id>.wandb`` file is a LevelDB-style log (wandb's Go core writes it; the Python SDK
no longer ships a reader): a 7-byte file header, then 32 KiB blocks of chunks, each with a
7-byte header (CRC-32C, little-endian length, type: 1 full, 2 first, 3 middle, 4 last) holding
serialised ``wandb_internal_pb2.Record`` protobufs.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of one offline ``run-<id>.wandb`` file, in order."""
    data = path.read_bytes()
    records, pending, position = [], b"", _HEADER
    while position + _HEADER <= len(data):
        left = _BLOCK - position % _BLOCK
        if left < _HEADER:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + _HEADER])
        position += _HEADER
        if kind == 0:  # zero padding up to the block's end
            position += left - _HEADER
            continue
        chunk, position = data[position : position + length], position + length
        if kind == _FULL:
            records.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            records.append(pending + chunk)
    parsed = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        parsed.append(record)
    return parsed


def records_of(run_folder: Path, kind: str) -> list:
    """The records of one type (``run``, ``artifact``, ``history``, ...) of every offline W&B
    run under ``run_folder/wandb``, in order: a run re-opened by id adds a folder of its own."""
    files = sorted((run_folder / "wandb").glob("offline-run-*/run-*.wandb"))
    return [
        getattr(record, kind)
        for path in files
        for record in read_records(path)
        if record.WhichOneof("record_type") == kind
    ]


def wait_for_exit(run_folder: Path, timeout: float = 30.0) -> None:
    """Wait until the newest offline W&B run under ``run_folder/wandb`` ends with its ``exit``.

    ``run.finish()`` of an offline run can return before wandb's core process has written the
    file's last records (seen on a loaded machine: 25 ms later).

    Raises:
        TimeoutError: naming the folder, when the file is not complete within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted((run_folder / "wandb").glob("offline-run-*/run-*.wandb"))
        try:
            records = read_records(files[-1]) if files else []
        except DecodeError:  # its last record still being written
            records = []
        if records and records[-1].WhichOneof("record_type") == "exit":
            return
        time.sleep(0.1)
    raise TimeoutError(f"{run_folder}: no complete offline W&B run file after {timeout} s")


def config_of(run: wandb_internal_pb2.RunRecord) -> dict:
    """A run record's config as plain values (W&B's own ``_wandb`` entry left out)."""
    return {
        item.key: json.loads(item.value_json) for item in run.config.update if item.key != "_wandb"
    }


def run_records(run_folder: Path) -> list[wandb_internal_pb2.RunRecord]:
    """The ``run`` records of every offline W&B run under ``run_folder/wandb``."""
    return records_of(run_folder, "run")


def artifact_table(artifact: wandb_internal_pb2.ArtifactRecord, name: str) -> dict:
    """The W&B Table ``name`` of an artifact record, as the file W&B staged for upload holds it
    (``columns``, ``data``: one list per row, None for a null cell)."""
    (entry,) = [e for e in artifact.manifest.contents if e.path == f"{name}.table.json"]
    return json.loads(Path(entry.local_path).read_text())
