"""Reads the history rows of an offline W&B run from its ``run-*.wandb`` transaction log.

The log uses LevelDB's log format: a 7-byte file header (``:W&B``, magic, version), then 32 KiB blocks of
records, each with a 7-byte header (CRC32, little-endian length, type: 1 full, 2 first, 3 middle,
4 last); a block's tail shorter than a header is zero padding. Each full payload is a serialised
``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK_SIZE = 32 * 1024
HEADER_SIZE = 7


def _payloads(data: bytes) -> list[bytes]:
    assert data[:4] == b":W&B", "not a W&B transaction log"
    payloads, pending, position = [], b"", HEADER_SIZE
    while position + HEADER_SIZE <= len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        if left_in_block < HEADER_SIZE:
            position += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position:position + HEADER_SIZE])
        if kind == 0 and length == 0:
            break
        chunk = data[position + HEADER_SIZE:position + HEADER_SIZE + length]
        position += HEADER_SIZE + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            payloads.append(pending)
            pending = b""
    return payloads


def history_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Every ``wandb.log`` row of the run in ``run_dir`` (a ``wandb/offline-run-*`` folder)."""
    (log_file,) = run_dir.glob("run-*.wandb")
    rows = []
    for payload in _payloads(log_file.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows
