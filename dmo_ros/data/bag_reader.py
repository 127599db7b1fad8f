"""Read rosbag2 MCAP bags, whole or cut short by a crash, without rclpy.

`open_bag` indexes every MCAP file by streaming it (`mcap_index`), so a bag whose
metadata.yaml is missing or stale, or whose last file has a torn tail, still
yields every message written before the crash. The bag is only read, never
repaired in place (`dmo-ros bag repair` does that, see `bag_repair`). What cannot be a
crash (garbage, a file shorter than its own metadata says, a missing file) is a `UserError`
naming the bag and the problem.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from dmo_ros.data.bag_writer import normalize_type, typestore
from dmo_ros.data.mcap_index import (
    OP_MESSAGE,
    ChunkRef,
    McapError,
    McapIndex,
    index_mcap,
    read_chunk,
)
from dmo_ros.errors import UserError


@dataclass
class _File:
    path: Path
    index: McapIndex
    topic_of: dict[int, str]  # channel id -> topic


@dataclass
class Bag:
    """An opened bag: topics, custom metadata, time span, and its messages in time order."""

    path: Path
    topics: dict[str, tuple[str, int]]  # topic -> (msgtype, message count)
    metadata: dict[str, str]  # rosbag2 custom_data (dmo_ros.task, dmo_ros.robot, ...)
    start_ns: int
    end_ns: int
    recovered: list[str] = field(default_factory=list)  # what was rebuilt; empty when clean
    _files: list[_File] = field(default_factory=list, repr=False)

    @property
    def files(self) -> list[Path]:
        return [f.path for f in self._files]

    @property
    def indexes(self) -> list[McapIndex]:
        """Each file's index, in the bag's file order (what `bag_repair` rewrites from)."""
        return [f.index for f in self._files]

    @property
    def message_count(self) -> int:
        return sum(n for _, n in self.topics.values())

    def find_topic(self, name: str, msgtype: str | None = None) -> str | None:
        """The bag's topic for `name` ('camera/image_raw' matches '/camera/image_raw' and
        '/ns/camera/image_raw' when unique), optionally of type `msgtype`."""
        cands = self._candidates(name)
        if msgtype is not None:
            cands = [t for t in cands if self.topics[t][0] == normalize_type(msgtype)]
        return cands[0] if len(cands) == 1 else None

    def _candidates(self, name: str) -> list[str]:
        name = name.strip()
        exact = [t for t in self.topics if t == name or t == "/" + name.lstrip("/")]
        return exact or [t for t in self.topics if t.endswith("/" + name.lstrip("/"))]

    def require_topic(self, name: str, msgtype: str | None = None) -> str:
        """Like `find_topic`, but a missing, ambiguous or mistyped topic is a UserError."""
        cands = self._candidates(name)
        if len(cands) > 1:
            raise UserError(f"{self.path}: topic '{name}' is ambiguous ({', '.join(cands)})")
        if not cands:
            have = ", ".join(sorted(self.topics)) or "none"
            raise UserError(f"{self.path}: no topic '{name}' (the bag has: {have})")
        topic = cands[0]
        if msgtype is not None and self.topics[topic][0] != normalize_type(msgtype):
            raise UserError(
                f"{self.path}: topic {topic} is {self.topics[topic][0]}, "
                f"expected {normalize_type(msgtype)}"
            )
        return topic

    def timestamps(self, topic: str) -> np.ndarray:
        """Sorted log times (ns) of one topic's messages, from the index (no payload read)."""
        topic = self.require_topic(topic)
        parts = [
            t
            for f in self._files
            for c in f.index.chunks
            for cid, t in (c.times or {}).items()
            if f.topic_of.get(cid) == topic
        ]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def messages(self, topics: list[str] | None = None) -> Iterator[tuple[str, int, bytes]]:
        """(topic, log time ns, CDR bytes) in time order; chunks are read lazily."""
        wanted = set(self.topics) if topics is None else {self.require_topic(t) for t in topics}
        handles = [f.path.open("rb") for f in self._files]
        try:
            sources = []
            for fi, f in enumerate(self._files):
                cids = {cid for cid, t in f.topic_of.items() if t in wanted}
                for chunk in f.index.chunks:
                    if any(cid in (chunk.times or {}) for cid in cids):
                        sources.append(self._source(handles[fi], f, chunk, cids, len(sources)))
            for _t, _k, i, topic, t, data in heapq.merge(*sources):
                if i >= 0:  # not a sentinel
                    yield topic, t, data
        finally:
            for h in handles:
                h.close()

    def _source(self, handle, f: _File, chunk: ChunkRef, cids: set[int], k: int):
        # A sentinel first, so that merge reads a chunk only once its time has come.
        yield chunk.start, k, -1, "", 0, b""
        try:
            msgs = [
                (t, cid, bytes(body))
                for op, t, body, cid in read_chunk(handle, chunk)
                if op == OP_MESSAGE and cid in cids
            ]
        except McapError as exc:
            raise UserError(f"{self.path}: {f.path.name}: {exc}") from None
        msgs.sort(key=lambda m: m[0])
        for i, (t, cid, data) in enumerate(msgs):
            yield t, k, i, f.topic_of[cid], t, data

    def decode(self, topic: str, cdr: bytes) -> object:
        """Deserialize one message with the ROS 2 Kilted types of rosbags (no rclpy)."""
        msgtype = self.topics[self.require_topic(topic)][0]
        try:
            return typestore().deserialize_cdr(cdr, msgtype)
        except Exception as exc:
            raise UserError(f"{self.path}: {topic}: cannot decode a {msgtype}: {exc}") from None


def _split_number(p: Path) -> tuple[int, str]:
    m = re.search(r"_(\d+)\.mcap$", p.name)
    return (int(m.group(1)) if m else -1, p.name)


def _read_metadata(bag: Path) -> dict | None:
    meta = bag / "metadata.yaml"
    if not meta.exists():
        return None
    try:
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        ok = isinstance(info, dict) and "relative_file_paths" in info
    except (yaml.YAMLError, OSError, UnicodeDecodeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise UserError(f"{bag}: metadata.yaml is not rosbag2 metadata")
    if (storage := info.get("storage_identifier")) != "mcap":
        raise UserError(f"{bag}: storage '{storage}' is not supported (only MCAP bags)")
    if (mode := str(info.get("compression_mode") or "").lower()) not in ("", "none"):
        raise UserError(f"{bag}: compression mode '{mode}' is not supported")
    return info


def open_bag(path: str | Path) -> Bag:
    """Open a rosbag2 MCAP bag folder (or one .mcap file); see the module docstring."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such bag")
    info = None
    if p.is_file():
        if p.suffix != ".mcap":
            raise UserError(f"{p}: not a bag (give the bag folder or an .mcap file)")
        paths = [p]
    else:
        info = _read_metadata(p)
        listed = [p / Path(x).name for x in (info or {}).get("relative_file_paths") or []]
        if missing := [x.name for x in listed if not x.exists()]:
            raise UserError(f"{p}: {missing[0]} (listed in metadata.yaml) is missing")
        present = sorted(p.glob("*.mcap"), key=_split_number)
        paths = listed + [x for x in present if x not in listed]
        if not paths:
            what = "no .mcap file" if info else "no metadata.yaml and no .mcap file"
            raise UserError(f"{p}: not a bag ({what})")
    recovered: list[str] = []
    if info is None and p.is_dir():
        recovered.append("metadata.yaml missing: rebuilt from the MCAP files")
    claimed = {
        Path(f.get("path", "")).name: int(f.get("message_count", 0))
        for f in (info or {}).get("files") or []
        if isinstance(f, dict)
    }
    files: list[_File] = []
    custom: dict[str, str] = {}
    topics: dict[str, list] = {}
    for fp in paths:
        try:
            index = index_mcap(fp)
        except McapError as exc:
            raise UserError(f"{p}: {fp.name}: {exc}") from None
        except OSError as exc:
            raise UserError(f"{p}: {fp.name}: {exc.strerror}") from None
        counts = index.counts()
        found = sum(counts.values())
        if found < claimed.get(fp.name, 0):
            raise UserError(
                f"{p}: {fp.name} is truncated: metadata.yaml lists {claimed[fp.name]} "
                f"messages, the file holds {found}"
            )
        if not index.complete:
            recovered.append(
                f"{fp.name}: not closed (recording interrupted): {found} messages kept, "
                f"{index.torn_bytes} torn bytes at the end left out"
            )
        elif info is not None and fp.name not in claimed:
            recovered.append(f"{fp.name}: not listed in metadata.yaml")
        elif found > claimed.get(fp.name, found):
            recovered.append(
                f"{fp.name}: holds {found} messages, metadata.yaml lists {claimed[fp.name]}"
            )
        custom.update(index.metadata.get("dmo_ros", {}))
        topic_of = {}
        for cid, (topic, sid, enc) in index.channels.items():
            if enc != "cdr":
                raise UserError(f"{p}: {fp.name}: topic {topic} is '{enc}', not CDR")
            msgtype = index.schemas.get(sid, ("",))[0]
            entry = topics.setdefault(topic, [msgtype, 0])
            if entry[0] != msgtype:
                raise UserError(f"{p}: topic {topic} has two types: {entry[0]}, {msgtype}")
            entry[1] += counts.get(cid, 0)
            topic_of[cid] = topic
        files.append(_File(fp, index, topic_of))
    if info is not None:
        custom.update({str(k): str(v) for k, v in (info.get("custom_data") or {}).items()})
    spans = [(c.start, c.end) for f in files for c in f.index.chunks if c.times]
    if not spans or not any(n for _, n in topics.values()):
        raise UserError(f"{p}: empty bag (no messages)")
    return Bag(
        path=p,
        topics={t: (msgtype, n) for t, (msgtype, n) in topics.items()},
        metadata=custom,
        start_ns=min(s for s, _ in spans),
        end_ns=max(e for _, e in spans),
        recovered=recovered,
        _files=files,
    )
