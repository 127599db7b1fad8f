"""One MCAP file, written record by record (the storage of a rosbag2 MCAP bag).

Why not rosbags' own writer: it keeps the whole file's index and the bag's
metadata until close, so a `kill -9` leaves a file nothing opens. Here every
sealed chunk goes to the kernel at once, followed by its message indexes, so
the file is always "whole records + at most one torn record" and
`mcap_index.index_mcap` recovers it. A cleanly closed file carries the full
summary (schemas, channels, chunk indexes, statistics) and footer of the MCAP
spec (https://mcap.dev/spec), which `ros2 bag`, Foxglove and rosbags use.
"""

from __future__ import annotations

import os
import struct
import zlib
from array import array
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE = 0x01, 0x02, 0x03, 0x04, 0x05
OP_CHUNK, OP_MESSAGE_INDEX, OP_CHUNK_INDEX, OP_STATISTICS = 0x06, 0x07, 0x08, 0x0B
OP_METADATA, OP_METADATA_INDEX, OP_SUMMARY_OFFSET, OP_DATA_END = 0x0C, 0x0D, 0x0E, 0x0F

_MSG_HEADER = struct.Struct("<BQHIQQ")  # opcode, record length, channel, sequence, log, publish
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")


def _string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return _U32.pack(len(b)) + b


def _map(entries: dict[str, str]) -> bytes:
    body = b"".join(_string(k) + _string(v) for k, v in entries.items())
    return _U32.pack(len(body)) + body


def record(op: int, body: bytes) -> bytes:
    return bytes([op]) + _U64.pack(len(body)) + body


def schema_record(schema_id: int, name: str, encoding: str, data: str) -> bytes:
    return record(
        OP_SCHEMA, _U16.pack(schema_id) + _string(name) + _string(encoding) + _string(data)
    )


def channel_record(
    channel_id: int, schema_id: int, topic: str, encoding: str, metadata: dict[str, str]
) -> bytes:
    body = _U16.pack(channel_id) + _U16.pack(schema_id) + _string(topic) + _string(encoding)
    return record(OP_CHANNEL, body + _map(metadata))


def metadata_record(name: str, entries: dict[str, str]) -> bytes:
    return record(OP_METADATA, _string(name) + _map(entries))


@dataclass
class Chunk:
    """Messages gathered in memory until sealed; `parts` are written as they are (no copy)."""

    parts: list = field(default_factory=list)
    size: int = 0
    start: int = 2**63 - 1
    end: int = 0
    index: dict[int, array] = field(default_factory=dict)  # channel -> [t0, off0, t1, off1, ...]

    def add(
        self, channel_id: int, sequence: int, t_ns: int, data: bytes, publish_ns: int | None = None
    ) -> None:
        # One message record: 31 header bytes, then the CDR payload untouched.
        published = t_ns if publish_ns is None else publish_ns
        head = _MSG_HEADER.pack(OP_MESSAGE, 22 + len(data), channel_id, sequence, t_ns, published)
        self.index.setdefault(channel_id, array("Q")).extend((t_ns, self.size))
        self.parts.append(head)
        self.parts.append(data)
        self.size += len(head) + len(data)
        self.start = min(self.start, t_ns)
        self.end = max(self.end, t_ns)

    def counts(self) -> dict[int, int]:
        return {cid: len(idx) // 2 for cid, idx in self.index.items()}


class McapFileWriter:
    """Appends records to one MCAP file; `close()` adds the summary and footer."""

    def __init__(self, path: Path, library: str, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.f: BinaryIO = path.open("xb")  # never overwrite
        self.pos = 0
        self.schemas: dict[int, bytes] = {}
        self.channels: dict[int, bytes] = {}
        self.chunk_indexes: list[bytes] = []
        self.metadata_index: list[bytes] = []
        self.channel_counts: dict[int, int] = {}
        self.message_count = 0
        self.start = 2**63 - 1
        self.end = 0
        self._put(MAGIC + record(OP_HEADER, _string("ros2") + _string(library)))

    def _put(self, data: bytes) -> None:
        self.f.write(data)
        self.pos += len(data)

    def add_schema(self, schema_id: int, rec: bytes) -> None:
        if schema_id not in self.schemas:
            self.schemas[schema_id] = rec
            self._put(rec)

    def add_channel(self, channel_id: int, rec: bytes) -> None:
        if channel_id not in self.channels:
            self.channels[channel_id] = rec
            self.channel_counts.setdefault(channel_id, 0)
            self._put(rec)

    def add_metadata(self, name: str, entries: dict[str, str]) -> None:
        rec = metadata_record(name, entries)
        self.metadata_index.append(
            record(OP_METADATA_INDEX, struct.pack("<QQ", self.pos, len(rec)) + _string(name))
        )
        self._put(rec)

    def write_chunk(self, chunk: Chunk) -> None:
        """Chunk record, then its message indexes, then hand everything to the kernel."""
        crc = 0
        for part in chunk.parts:
            crc = zlib.crc32(part, crc)
        body_len = 8 + 8 + 8 + 4 + 4 + 0 + 8 + chunk.size  # uncompressed: compression ""
        head = bytes([OP_CHUNK]) + _U64.pack(body_len)
        head += struct.pack("<QQQI", chunk.start, chunk.end, chunk.size, crc)
        head += _string("") + _U64.pack(chunk.size)
        chunk_start = self.pos
        self._put(head)
        for part in chunk.parts:
            self.f.write(part)
        self.pos += chunk.size
        chunk_end = self.pos
        offsets = []
        for cid, idx in sorted(chunk.index.items()):
            offsets.append(_U16.pack(cid) + _U64.pack(self.pos))
            entries = idx.tobytes()
            self._put(record(OP_MESSAGE_INDEX, _U16.pack(cid) + _U32.pack(len(entries)) + entries))
        self.f.flush()  # into the kernel: a kill -9 of this process no longer loses it
        if self.fsync:
            os.fsync(self.f.fileno())
        offs = b"".join(offsets)
        self.chunk_indexes.append(
            record(
                OP_CHUNK_INDEX,
                struct.pack("<QQQQ", chunk.start, chunk.end, chunk_start, chunk_end - chunk_start)
                + _U32.pack(len(offs))
                + offs
                + _U64.pack(self.pos - chunk_end)
                + _string("")
                + struct.pack("<QQ", chunk.size, chunk.size),
            )
        )
        for cid, n in chunk.counts().items():
            self.channel_counts[cid] = self.channel_counts.get(cid, 0) + n
            self.message_count += n
        self.start = min(self.start, chunk.start)
        self.end = max(self.end, chunk.end)

    def close(self, metadata: dict[str, dict[str, str]]) -> None:
        """Metadata records, data end, summary (with offsets and CRC), footer."""
        for name, entries in metadata.items():
            self.add_metadata(name, entries)
        self._put(record(OP_DATA_END, _U32.pack(0)))
        summary_start = self.pos
        groups: list[tuple[int, bytes]] = [
            (OP_SCHEMA, b"".join(self.schemas[k] for k in sorted(self.schemas))),
            (OP_CHANNEL, b"".join(self.channels[k] for k in sorted(self.channels))),
            (OP_CHUNK_INDEX, b"".join(self.chunk_indexes)),
            (OP_METADATA_INDEX, b"".join(self.metadata_index)),
        ]
        counts = b"".join(
            _U16.pack(k) + _U64.pack(v) for k, v in sorted(self.channel_counts.items())
        )
        stats = struct.pack(
            "<QHIIIIQQ",
            self.message_count,
            len(self.schemas),
            len(self.channels),
            0,
            len(self.metadata_index),
            len(self.chunk_indexes),
            self.start if self.message_count else 0,
            self.end,
        )
        groups.append(
            (OP_STATISTICS, record(OP_STATISTICS, stats + _U32.pack(len(counts)) + counts))
        )
        summary = BytesIO()
        offsets = BytesIO()
        for op, data in groups:
            if data:
                offsets.write(
                    record(
                        OP_SUMMARY_OFFSET,
                        bytes([op]) + struct.pack("<QQ", summary_start + summary.tell(), len(data)),
                    )
                )
                summary.write(data)
        offset_start = summary_start + summary.tell()
        summary.write(offsets.getvalue())
        footer_head = (
            bytes([OP_FOOTER]) + _U64.pack(20) + struct.pack("<QQ", summary_start, offset_start)
        )
        crc = zlib.crc32(footer_head, zlib.crc32(summary.getvalue()))
        self._put(summary.getvalue() + footer_head + _U32.pack(crc) + MAGIC)
        self.f.flush()
        if self.fsync:
            os.fsync(self.f.fileno())
        self.f.close()

    def abandon(self) -> None:
        """Close the handle without a summary (after an I/O error); the file stays recoverable."""
        self.f.close()
