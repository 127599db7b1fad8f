"""Crash-safe rosbag2 writer: version 9 bags, MCAP storage, raw CDR in, several threads.

Layout (what `ros2 bag`, Foxglove and rosbags expect):
`<bag>/metadata.yaml` and `<bag>/<bag>_0.mcap`, `<bag>_1.mcap`, ... after splits.

Crash safety, the reason this is not rosbags' `Writer`:
* `write()` only appends the CDR bytes to an in-memory chunk (cheap, any thread);
* a background thread seals the chunk every `flush_period` s (or when it grows
  past `chunk_bytes`), writes it with its message indexes and hands it to the
  kernel, so a `kill -9` loses at most the last `flush_period` (+ one write);
* `metadata.yaml` is written at open and rewritten (temp file + rename) every
  second, at each split and at close, always describing data already on disk;
* each file starts with a `dmo_ros` metadata record holding the custom data, so
  even a bag whose metadata.yaml was lost keeps its task/robot labels.
`bag_reader.open_bag` reads such a bag after a crash (see `mcap_index`).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from types import TracebackType

import yaml
from rosbags.typesys import Stores, get_typestore

from dmo_ros.data.mcap_file import (
    Chunk,
    McapFileWriter,
    channel_record,
    schema_record,
)
from dmo_ros.errors import UserError

ROS_DISTRO = "kilted"
LIBRARY = "dmo_ros"
_INFINITE = {"sec": 9223372036, "nsec": 854775807}  # rosbag2's "infinite" duration

_TYPESTORE = None


def typestore():
    """The ROS 2 Kilted message types (shared, built once)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


def normalize_type(msgtype: str) -> str:
    """'sensor_msgs/Image' -> 'sensor_msgs/msg/Image' (the form bags store)."""
    parts = msgtype.strip("/").split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else "/".join(parts)


def offered_qos(reliable: bool = True, transient_local: bool = False, depth: int = 10) -> str:
    """The offered QoS profile as rosbag2 (metadata version 9) stores it, for `add_topic`."""
    profile = {
        "history": "keep_last",
        "depth": depth,
        "reliability": "reliable" if reliable else "best_effort",
        "durability": "transient_local" if transient_local else "volatile",
        "deadline": dict(_INFINITE),
        "lifespan": dict(_INFINITE),
        "liveliness": "automatic",
        "liveliness_lease_duration": dict(_INFINITE),
        "avoid_ros_namespace_conventions": False,
    }
    return yaml.safe_dump([profile], sort_keys=False).strip()


def _as_text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


class BagWriter:
    """A rosbag2 (v9, MCAP) bag opened for recording; see the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike,
        metadata: dict | None = None,
        split_size_mb: float | None = None,
        split_duration_s: float | None = None,
        planned_bytes: int = 0,
        *,
        flush_period: float = 0.5,
        metadata_period: float = 1.0,
        chunk_bytes: int = 8 * 2**20,
        max_pending_bytes: int = 256 * 2**20,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise UserError(f"{self.path}: already exists (a bag is never overwritten)")
        for name, v in (("split_size_mb", split_size_mb), ("split_duration_s", split_duration_s)):
            if v is not None and not v > 0:
                raise UserError(f"{self.path}: {name} must be positive, got {v}")
        free = _free_bytes(self.path.absolute())
        if planned_bytes > free:
            raise UserError(
                f"{self.path}: not enough free disk space: {free / 1e9:.2f} GB free, "
                f"{planned_bytes / 1e9:.2f} GB planned"
            )
        try:
            self.path.mkdir(parents=True)
        except FileExistsError:
            raise UserError(f"{self.path}: already exists (a bag is never overwritten)") from None
        self.custom = {str(k): _as_text(v) for k, v in (metadata or {}).items()}
        self.split_bytes = int(split_size_mb * 2**20) if split_size_mb else None
        self.split_ns = int(split_duration_s * 1e9) if split_duration_s else None
        self.flush_period = flush_period
        self.metadata_period = metadata_period
        self.chunk_bytes = chunk_bytes
        self.max_pending_bytes = max_pending_bytes
        self.fsync = fsync

        self._cond = threading.Condition()
        # Guarded by _cond: the producers' side.
        self._topics: dict[str, int] = {}  # name as given and fully qualified -> channel id
        self._channels: dict[int, dict] = {}  # id -> topic, type, qos, hash, schema id
        self._schemas: dict[str, int] = {}  # msgtype -> schema id
        self._records: dict[tuple[str, int], bytes] = {}  # ("schema"|"channel", id) -> record
        self._seq: dict[int, int] = {}
        self._chunk = Chunk()
        self._chunk_born = 0.0
        self._events: list[tuple[str, object]] = []  # ("schema"|"channel", id) | ("chunk", Chunk)
        self._pending = 0
        self._closing = False
        self._error: BaseException | None = None
        self.stalls = 0  # times a producer waited because the disk fell behind
        # Owned by the writer thread once started.
        self._files: list[dict] = []  # closed files: path, start, end, count
        self._disk_counts: dict[int, int] = {}
        self._file = self._open_file()
        self._write_metadata()
        self._done = threading.Event()  # the writer thread has closed the bag (or failed)
        self._thread = threading.Thread(
            target=self._run, name=f"bag-writer {self.path}", daemon=True
        )
        self._thread.start()

    # ---- producers (any thread) ------------------------------------------------------------

    def add_topic(self, topic: str, msgtype: str, offered_qos: str | None = None) -> None:
        """Declare a topic before writing to it (again with the same type: a no-op)."""
        name = topic if topic.startswith("/") else "/" + topic
        msgtype = normalize_type(msgtype)
        store = typestore()
        with self._cond:
            self._raise_if_failed()
            if name in self._topics:
                known = self._channels[self._topics[name]]["type"]
                if known != msgtype:
                    raise UserError(f"{self.path}: topic {name} is {known}, not {msgtype}")
                self._topics[topic] = self._topics[name]
                return
            try:
                msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
                digest = store.hash_rihs01(msgtype)
            except Exception:
                raise UserError(f"{self.path}: unknown message type '{msgtype}'") from None
            if msgtype not in self._schemas:
                sid = self._schemas[msgtype] = len(self._schemas) + 1
                self._records["schema", sid] = schema_record(sid, msgtype, "ros2msg", msgdef)
                self._events.append(("schema", sid))
            cid = len(self._channels) + 1
            qos = offered_qos or ""
            self._channels[cid] = {"topic": name, "type": msgtype, "qos": qos, "hash": digest}
            meta = {"offered_qos_profiles": qos, "topic_type_hash": digest}
            self._records["channel", cid] = channel_record(
                cid, self._schemas[msgtype], name, "cdr", meta
            )
            self._events.append(("channel", cid))
            self._topics[name] = self._topics[topic] = cid
            self._seq[cid] = 0
            self._cond.notify_all()

    def write(self, topic: str, t_ns: int, cdr: bytes) -> None:
        """Queue one serialized (CDR) message logged at `t_ns`; returns without disk I/O."""
        data = cdr if isinstance(cdr, bytes) else bytes(cdr)  # a view could change under us
        with self._cond:
            self._raise_if_failed()
            if self._closing:
                raise UserError(f"{self.path}: write after close")
            cid = self._topics.get(topic)
            if cid is None:
                raise ValueError(f"{self.path}: topic {topic} was not added (call add_topic first)")
            while self._pending > self.max_pending_bytes and self._error is None:
                self.stalls += 1  # the disk is slower than the data: hold the producer
                self._cond.wait(0.05)
            self._raise_if_failed()
            if not self._chunk.parts:
                self._chunk_born = time.monotonic()
            self._seq[cid] += 1
            self._chunk.add(cid, self._seq[cid], int(t_ns), data)
            if self._chunk.size >= self.chunk_bytes:
                self._seal()

    def close(self) -> None:
        """Flush everything, write each file's summary and the final metadata.yaml."""
        interrupted = None
        while not self._done.is_set():
            # A Ctrl-C here must not leave the files ahead of metadata.yaml (the writer thread,
            # a daemon, dies with the process): finish closing, then pass the interrupt on.
            # An Event, not Thread.join: Python 3.11 takes an interrupted join's thread for
            # finished.
            try:
                with self._cond:
                    self._closing = True
                    self._cond.notify_all()
                self._done.wait()
            except KeyboardInterrupt as exc:
                interrupted = exc
        if interrupted is not None:
            raise interrupted
        with self._cond:
            self._raise_if_failed()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def stats(self) -> dict:
        """Messages and bytes on disk so far, files, bytes waiting in memory, producer stalls."""
        with self._cond:
            pending = self._pending + self._chunk.size
        return {
            "messages": sum(self._disk_counts.values()),
            "files": len(self._files) + 1,
            "bytes": sum(f["bytes"] for f in self._files) + self._file.pos,
            "pending_bytes": pending,
            "stalls": self.stalls,
        }

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise UserError(f"{self.path}: recording failed: {self._error}") from self._error

    def _seal(self) -> None:  # caller holds _cond
        if self._chunk.parts:
            self._events.append(("chunk", self._chunk))
            self._pending += self._chunk.size
            self._chunk = Chunk()
            self._cond.notify_all()

    # ---- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        last_meta, stale = time.monotonic(), False  # stale: metadata.yaml lags the files

        def meta_due() -> bool:
            return stale and time.monotonic() - last_meta >= self.metadata_period

        try:
            while True:
                with self._cond:
                    while not (self._events or self._closing or self._chunk_due() or meta_due()):
                        wait = self._wait_time()
                        if stale:
                            wait = min(wait, self.metadata_period - (time.monotonic() - last_meta))
                        self._cond.wait(max(0.001, wait))
                    if self._chunk_due() or self._closing:
                        self._seal()
                    events, self._events = self._events, []
                    closing = self._closing
                for kind, item in events:
                    if kind == "chunk":
                        self._write_chunk(item)  # type: ignore[arg-type]
                        with self._cond:
                            self._pending -= item.size  # type: ignore[attr-defined]
                            self._cond.notify_all()
                    else:
                        self._add_record(self._file, kind, item)  # type: ignore[arg-type]
                stale = stale or bool(events)
                if closing:
                    self._file.close(file_metadata(self._bag_info()))
                    self._write_metadata(final=True)
                    return
                if meta_due():
                    self._write_metadata()
                    last_meta, stale = time.monotonic(), False
        except BaseException as exc:  # disk full, I/O error: surface it to the producers
            with self._cond:
                self._error = exc
                self._cond.notify_all()
            self._file.abandon()
        finally:
            self._done.set()

    def _chunk_due(self) -> bool:
        return bool(self._chunk.parts) and time.monotonic() - self._chunk_born >= self.flush_period

    def _wait_time(self) -> float:
        if not self._chunk.parts:
            return self.flush_period
        return max(0.001, self.flush_period - (time.monotonic() - self._chunk_born))

    def _open_file(self) -> McapFileWriter:
        name = f"{self.path.name}_{len(self._files)}.mcap"
        f = McapFileWriter(self.path / name, LIBRARY, fsync=self.fsync)
        f.add_metadata("dmo_ros", self.custom)
        with self._cond:
            known = sorted(self._records, key=lambda key: key[0] != "schema")
        for kind, i in known:
            self._add_record(f, kind, i)
        return f

    def _add_record(self, f: McapFileWriter, kind: str, i: int) -> None:
        with self._cond:
            rec = self._records[kind, i]
        if kind == "schema":
            f.add_schema(i, rec)
        else:
            f.add_channel(i, rec)

    def _write_chunk(self, chunk: Chunk) -> None:
        self._file.write_chunk(chunk)
        for cid, n in chunk.counts().items():
            self._disk_counts[cid] = self._disk_counts.get(cid, 0) + n
        f = self._file
        if (self.split_bytes and f.pos >= self.split_bytes) or (
            self.split_ns and f.end - f.start >= self.split_ns
        ):
            f.close(file_metadata(self._bag_info()))
            self._files.append(file_info(f))
            self._file = self._open_file()
            self._write_metadata()  # list the new file at once

    # ---- metadata.yaml ---------------------------------------------------------------------

    def _bag_info(self) -> dict:
        with self._cond:
            channels = dict(self._channels)
        topics = [(c, self._disk_counts.get(cid, 0)) for cid, c in sorted(channels.items())]
        files = [*self._files, file_info(self._file)]
        return bag_info(files, topics, self.custom)

    def _write_metadata(self, final: bool = False) -> None:
        write_metadata(self.path, self._bag_info(), fsync=self.fsync or final)


def file_info(f: McapFileWriter) -> dict:
    """One file's entry in metadata.yaml (plus its size in bytes, for `stats`)."""
    start = f.start if f.message_count else 0
    return {
        "path": f.path.name,
        "starting_time": {"nanoseconds_since_epoch": start},
        "duration": {"nanoseconds": max(0, f.end - start) if f.message_count else 0},
        "message_count": f.message_count,
        "bytes": f.pos,
    }


def bag_info(files: list[dict], topics: list[tuple[dict, int]], custom: dict[str, str]) -> dict:
    """rosbag2 (version 9) bag information: `files` as `file_info` gives them, `topics` as
    (channel: topic, type, qos, hash; message count) in channel order."""
    counted = [f for f in files if f["message_count"]]
    starts = [f["starting_time"]["nanoseconds_since_epoch"] for f in counted]
    ends = [s + f["duration"]["nanoseconds"] for s, f in zip(starts, counted)]
    start = min(starts) if starts else 0
    return {
        "version": 9,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": (max(ends) - start) if ends else 0},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": sum(f["message_count"] for f in files),
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": c["topic"],
                    "type": c["type"],
                    "serialization_format": "cdr",
                    "offered_qos_profiles": yaml.safe_load(c["qos"]) or [],
                    "type_description_hash": c["hash"],
                },
                "message_count": n,
            }
            for c, n in topics
        ],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [f["path"] for f in files],
        "files": [{k: v for k, v in f.items() if k != "bytes"} for f in files],
        "custom_data": dict(custom) or None,
        "ros_distro": ROS_DISTRO,
    }


def file_metadata(info: dict) -> dict[str, dict[str, str]]:
    """The `rosbag2` metadata record a closed file carries (as rosbag2's MCAP plugin writes)."""
    return {"rosbag2": {"serialized_metadata": yaml.safe_dump(info, sort_keys=False)}}


def write_metadata(path: Path, info: dict, fsync: bool = False) -> None:
    """Replace `path`/metadata.yaml atomically: a crash leaves the old one or the new one."""
    text = yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False)
    tmp = path / ".metadata.yaml.tmp"
    with tmp.open("w") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path / "metadata.yaml")
