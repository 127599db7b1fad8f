"""Index an MCAP file by streaming it up to its last whole record.

This is the recovery that `ros2 bag reindex` does, done on every open so that
one code path reads clean and crashed files alike: a file cut by a `kill -9`
ends in at most one torn record, which is left out; everything before it is
indexed from the chunk headers and the message indexes that follow each chunk
(a chunk without a whole index, e.g. the last one of a torn file, is parsed). A chunk the
crash cut through keeps its whole messages when it is uncompressed (as this package writes
them). Nothing is ever written to the file; `bag_repair` rewrites it into a closed one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.storage_mcap import decompress

from dmo_ros.data.mcap_file import (
    MAGIC,
    OP_CHANNEL,
    OP_CHUNK,
    OP_DATA_END,
    OP_FOOTER,
    OP_MESSAGE,
    OP_MESSAGE_INDEX,
    OP_METADATA,
    OP_SCHEMA,
)

_HEAD = struct.Struct("<BQ")
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")


class McapError(Exception):
    """The file is not a readable MCAP file (the message names the problem, not the path)."""


@dataclass
class ChunkRef:
    """Where one chunk's records lie, and when each channel's messages in it were logged."""

    offset: int  # first byte of the (compressed) records
    compressed_size: int
    uncompressed_size: int
    compression: str
    crc: int
    start: int
    end: int
    times: dict[int, np.ndarray] | None = None  # channel -> log times; None until known
    loose: list[tuple[int, int, int, int]] | None = None  # unchunked: (channel, t, offset, size)
    torn: bool = False  # cut by a crash: its whole records only, no CRC to check


@dataclass
class McapIndex:
    path: Path
    size: int
    schemas: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # name, encoding, text
    channels: dict[int, tuple[str, int, str]] = field(default_factory=dict)  # topic, schema, enc
    channel_meta: dict[int, dict[str, str]] = field(default_factory=dict)  # offered QoS, hash
    library: str = ""  # the writer named in the header
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    chunks: list[ChunkRef] = field(default_factory=list)
    complete: bool = False  # reached the Data End record: the file was closed cleanly
    torn_bytes: int = 0  # bytes after the last whole record

    def counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for c in self.chunks:
            for cid, t in (c.times or {}).items():
                out[cid] = out.get(cid, 0) + len(t)
        return out


def _string(buf: bytes | memoryview, i: int) -> tuple[str, int]:
    (n,) = _U32.unpack_from(buf, i)
    return bytes(buf[i + 4 : i + 4 + n]).decode(), i + 4 + n


def _map(body: bytes | memoryview, i: int) -> tuple[dict[str, str], int]:
    (n,) = _U32.unpack_from(body, i)
    i, end, entries = i + 4, i + 4 + n, {}
    while i < end:
        k, i = _string(body, i)
        v, i = _string(body, i)
        entries[k] = v
    return entries, end


def _parse_meta(
    op: int, body: bytes | memoryview, index: McapIndex
) -> None:  # schema / channel / metadata records
    if op == OP_SCHEMA:
        (sid,) = _U16.unpack_from(body, 0)
        name, i = _string(body, 2)
        enc, i = _string(body, i)
        text, _ = _string(body, i)
        index.schemas[sid] = (name, enc, text)
    elif op == OP_CHANNEL:
        cid, sid = struct.unpack_from("<HH", body, 0)
        topic, i = _string(body, 4)
        enc, i = _string(body, i)
        index.channels[cid] = (topic, sid, enc)
        index.channel_meta[cid] = _map(body, i)[0]
    elif op == OP_METADATA:
        name, i = _string(body, 0)
        index.metadata[name] = _map(body, i)[0]


def chunk_records(f: BinaryIO, chunk: ChunkRef) -> Iterator[tuple[int, memoryview]]:
    """Every record of one chunk as (opcode, body)."""
    if chunk.loose is not None:
        for _cid, _t, off, size in chunk.loose:
            f.seek(off - 22)  # the message's channel, sequence and times come first
            yield OP_MESSAGE, memoryview(f.read(size + 22))
        return
    f.seek(chunk.offset)
    raw = f.read(chunk.compressed_size)
    if len(raw) != chunk.compressed_size:
        raise McapError(f"chunk at byte {chunk.offset} is cut short")
    try:
        buf = decompress(raw, chunk.compression, chunk.uncompressed_size, chunk.crc)
    except (ReaderError, RuntimeError, ValueError) as exc:
        raise McapError(f"chunk at byte {chunk.offset}: {exc}") from None
    mv = memoryview(buf)
    i, n_buf = 0, len(buf)
    while i + 9 <= n_buf:
        op, n = _HEAD.unpack_from(buf, i)
        if i + 9 + n > n_buf:
            raise McapError(f"chunk at byte {chunk.offset}: record overruns the chunk")
        yield op, mv[i + 9 : i + 9 + n]
        i += 9 + n


def read_chunk(f: BinaryIO, chunk: ChunkRef) -> Iterator[tuple[int, int, memoryview, int]]:
    """Every record of one chunk as (opcode, log time, body, channel); a message's body is its
    payload (time and channel are 0 for other records)."""
    for op, body in chunk_records(f, chunk):
        if op == OP_MESSAGE:
            cid, _seq, t = struct.unpack_from("<HIQ", body, 0)
            yield OP_MESSAGE, t, body[22:], cid
        else:
            yield op, 0, body, 0


def _fill_from_records(f: BinaryIO, chunk: ChunkRef, index: McapIndex) -> None:
    times: dict[int, list[int]] = {}
    for op, t, body, cid in read_chunk(f, chunk):
        if op == OP_MESSAGE:
            times.setdefault(cid, []).append(t)
        else:
            _parse_meta(op, body, index)
    chunk.times = {cid: np.asarray(ts, dtype=np.int64) for cid, ts in times.items()}
    if chunk.torn and times:  # the header's span counts messages the crash lost
        chunk.start = min(min(ts) for ts in times.values())
        chunk.end = max(max(ts) for ts in times.values())


def _torn_chunk(f: BinaryIO, pos: int, size: int, index: McapIndex) -> int | None:
    """A chunk record the crash cut through, at `pos`: keep its whole records (uncompressed
    chunks only) as a chunk of its own; return where they end, None if nothing is kept."""
    f.seek(pos + 9)
    fixed = f.read(min(4096, size - pos - 9))
    try:
        start, stop, _usize, _crc = struct.unpack_from("<QQQI", fixed, 0)
        comp, i = _string(fixed, 28)
    except (struct.error, UnicodeDecodeError):
        return None  # cut inside the chunk's own header
    if comp or len(fixed) < i + 8:
        return None  # a compressed stream cannot be cut into whole records
    data_off = pos + 9 + i + 8
    whole, messages = 0, 0
    while data_off + whole + 9 <= size:
        f.seek(data_off + whole)
        op, n = _HEAD.unpack(f.read(9))
        if data_off + whole + 9 + n > size:
            break
        whole += 9 + n
        messages += op == OP_MESSAGE
    if not messages:
        return None
    index.chunks.append(ChunkRef(data_off, whole, whole, "", 0, start, stop, None, torn=True))
    return data_off + whole


def index_mcap(path: Path) -> McapIndex:
    """Stream the file's records; a torn tail is measured and left out, never an error."""
    size = path.stat().st_size
    index = McapIndex(path, size)
    if size == 0:
        raise McapError("empty file (0 bytes)")
    with path.open("rb") as f:
        magic = f.read(8)
        if magic != MAGIC:
            if MAGIC.startswith(magic):
                raise McapError(f"cut short inside its header ({size} bytes)")
            raise McapError("not an MCAP file (bad magic bytes)")
        pos, seen_header, last_chunk_open = 8, False, False
        while True:
            head = f.read(9)
            if len(head) < 9:
                index.torn_bytes = len(head)
                break
            op, n = _HEAD.unpack(head)
            end = pos + 9 + n
            if end > size:  # the record a crash cut through
                kept = _torn_chunk(f, pos, size, index) if op == OP_CHUNK else None
                index.torn_bytes = size - (kept or pos)
                break
            if not seen_header:
                if op != 0x01:
                    raise McapError("first record is not an MCAP header")
                seen_header = True
                body = f.read(n)
                try:
                    _profile, i = _string(body, 0)
                    index.library = _string(body, i)[0]
                except (struct.error, UnicodeDecodeError):
                    raise McapError("unreadable MCAP header") from None
            if op == OP_CHUNK:
                fixed = f.read(min(n, 4096))
                start, stop, usize, crc = struct.unpack_from("<QQQI", fixed, 0)
                comp, i = _string(fixed, 28)
                (csize,) = _U64.unpack_from(fixed, i)
                data_off = pos + 9 + i + 8
                if data_off + csize > end:
                    raise McapError(f"chunk at byte {pos} has an impossible length")
                index.chunks.append(ChunkRef(data_off, csize, usize, comp, crc, start, stop, {}))
                last_chunk_open = True
            elif op == OP_MESSAGE_INDEX and last_chunk_open:
                body = f.read(n)
                (cid,) = _U16.unpack_from(body, 0)
                (k,) = _U32.unpack_from(body, 2)
                pairs = np.frombuffer(body, dtype="<u8", count=k // 8, offset=6).reshape(-1, 2)
                index.chunks[-1].times[cid] = pairs[:, 0].astype(np.int64)  # type: ignore[index]
            elif op == OP_MESSAGE:
                cid, _seq, t = struct.unpack("<HIQ", f.read(14))
                last = index.chunks[-1] if index.chunks else None
                if last is None or last.loose is None:
                    last = ChunkRef(pos, 0, 0, "", 0, t, t, None, [])
                    index.chunks.append(last)
                last.loose.append((cid, t, pos + 9 + 22, n - 22))  # type: ignore[union-attr]
                last.start, last.end = min(last.start, t), max(last.end, t)
                last_chunk_open = False
            elif op in (OP_SCHEMA, OP_CHANNEL, OP_METADATA):
                _parse_meta(op, f.read(n), index)
            elif op in (OP_DATA_END, OP_FOOTER):
                index.complete = True
                break
            if op not in (OP_CHUNK, OP_MESSAGE_INDEX):
                last_chunk_open = False
            pos = end
            f.seek(pos)
        if not seen_header:
            raise McapError(f"cut short inside its header ({size} bytes)")
        if not index.complete and index.chunks and index.chunks[-1].loose is None:
            index.chunks[-1].times = None  # its message indexes may be torn: count from records
        for c in index.chunks:
            if c.loose is not None:
                c.times = {}
                for cid, t, _off, _size in c.loose:
                    c.times.setdefault(cid, []).append(t)  # type: ignore[arg-type]
                c.times = {k: np.asarray(v, dtype=np.int64) for k, v in c.times.items()}
            elif c.times is None or not c.times or any(k not in index.channels for k in c.times):
                _fill_from_records(f, c, index)  # no index, or channels defined inside chunks
    return index
