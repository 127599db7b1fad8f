"""`dmo-ros bag repair BAG [--out DIR]`: close the files of an interrupted recording.

rosbag2's answer to a crashed recording is `ros2 bag reindex`; this is the same for MCAP
bags. A file that a crash or `kill -9` left without its summary and footer opens with
`open_bag` (which indexes it by streaming) but with no other tool: rosbags' Reader, Foxglove's
seeking reader, `ros2 bag` and the Foxglove app all start from the footer. Such a file is
rewritten from its whole records into a closed one (summary, footer, the bag's metadata
record); every whole message is kept with its channel, sequence and times, only the torn bytes
at the very end go. metadata.yaml is rewritten to describe the files exactly.

In place, the originals stay in BAG/before_repair_<time>/ (hard links where the filesystem
has them: no second copy on disk) and each repaired file replaces its original by a rename,
so a crash of the repair itself leaves the old file or the new one, never half of one. With
--out the repaired bag is a new folder, and BAG is left as it is.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from dmo_ros.data.bag_reader import Bag, open_bag
from dmo_ros.data.bag_writer import LIBRARY, bag_info, file_metadata, write_metadata
from dmo_ros.data.mcap_file import Chunk, McapFileWriter, channel_record, schema_record
from dmo_ros.data.mcap_index import OP_MESSAGE, McapIndex, chunk_records
from dmo_ros.errors import UserError

CHUNK_BYTES = 8 * 2**20  # unchunked messages are regrouped into chunks of about this size


@dataclass
class Plan:
    bag: Bag
    info: dict  # the metadata.yaml that describes the files once repaired
    old_info: dict | None  # what metadata.yaml says now (None: missing)
    rewrite: list[int]  # indexes into bag.files of the files to close

    @property
    def metadata_stale(self) -> bool:
        return not _describes(self.old_info, self.info)


def _old_info(path: Path) -> dict | None:
    meta = path / "metadata.yaml"
    if not meta.exists():
        return None
    return yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]  # open_bag checked it


def _file_entry(name: str, index: McapIndex) -> dict:
    times = [t for c in index.chunks for t in (c.times or {}).values() if len(t)]
    count = sum(len(t) for t in times)
    start = min(int(t.min()) for t in times) if times else 0
    end = max(int(t.max()) for t in times) if times else 0
    return {
        "path": name,
        "starting_time": {"nanoseconds_since_epoch": start},
        "duration": {"nanoseconds": end - start},
        "message_count": count,
    }


def _topics(bag: Bag, old: dict | None) -> list[tuple[dict, int]]:
    """Each topic once, in the order the files define them, with its type, offered QoS and
    type hash from the channel (else from the old metadata.yaml) and its message count."""
    known = {
        t["topic_metadata"]["name"]: t["topic_metadata"]
        for t in (old or {}).get("topics_with_message_count") or []
    }
    topics: dict[str, dict] = {}
    for index in bag.indexes:
        for cid, (topic, sid, _enc) in sorted(index.channels.items()):
            if topic in topics:
                continue
            meta, before = index.channel_meta.get(cid, {}), known.get(topic, {})
            qos = meta.get("offered_qos_profiles")
            if qos is None:
                qos = yaml.safe_dump(before.get("offered_qos_profiles") or [])
            topics[topic] = {
                "topic": topic,
                "type": index.schemas.get(sid, ("",))[0],
                "qos": qos,
                "hash": meta.get("topic_type_hash", before.get("type_description_hash", "")),
            }
    return [(c, bag.topics[name][1]) for name, c in topics.items()]


def _describes(old: dict | None, new: dict) -> bool:
    """Whether metadata.yaml `old` already says what `new` says of the files and topics."""
    if old is None:
        return False
    keys = ("message_count", "relative_file_paths", "files", "starting_time", "duration")
    if any(old.get(k) != new[k] for k in keys):
        return False

    def counts(info: dict) -> dict[str, int]:
        return {
            t["topic_metadata"]["name"]: t["message_count"]
            for t in info.get("topics_with_message_count") or []
        }

    return counts(old) == counts(new)


def plan(path: Path) -> Plan:
    if path.is_file():
        raise UserError(f"{path}: a file; give the bag folder (repair rewrites its metadata.yaml)")
    bag = open_bag(path)  # not a bag, garbage, a file shorter than metadata.yaml: UserError
    old = _old_info(path)
    files = [_file_entry(p.name, index) for p, index in zip(bag.files, bag.indexes)]
    info = bag_info(files, _topics(bag, old), bag.metadata)
    rewrite = [i for i, index in enumerate(bag.indexes) if not index.complete]
    return Plan(bag, info, old, rewrite)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def close_file(index: McapIndex, dst: Path, info: dict) -> int:
    """Write the whole records of the interrupted file `index` to `dst` as a closed MCAP file
    carrying `info` (the bag's metadata); return the number of messages written."""
    w = McapFileWriter(dst, index.library or LIBRARY)
    try:
        for sid, (name, enc, text) in sorted(index.schemas.items()):
            w.add_schema(sid, schema_record(sid, name, enc, text))
        for cid, (topic, sid, enc) in sorted(index.channels.items()):
            w.add_channel(cid, channel_record(cid, sid, topic, enc, index.channel_meta[cid]))
        for name, entries in index.metadata.items():
            if name != "rosbag2":  # the bag's metadata as of writing: replaced by `info`
                w.add_metadata(name, entries)
        with index.path.open("rb") as f:
            for chunk in index.chunks:
                out = Chunk()
                for op, body in chunk_records(f, chunk):
                    if op != OP_MESSAGE:  # schemas and channels inside chunks: written above
                        continue
                    cid, seq, log_ns, publish_ns = struct.unpack_from("<HIQQ", body, 0)
                    out.add(cid, seq, log_ns, bytes(body[22:]), publish_ns)
                    if out.size >= CHUNK_BYTES:
                        w.write_chunk(out)
                        out = Chunk()
                if out.parts:
                    w.write_chunk(out)
        w.close(file_metadata(info))
    except BaseException:
        w.abandon()
        dst.unlink(missing_ok=True)
        raise
    _fsync(dst)
    return w.message_count


def _check_space(where: Path, needed: int) -> None:
    free = shutil.disk_usage(where).free
    if needed > free:
        raise UserError(
            f"{where}: not enough free disk space to repair: {free / 1e6:.1f} MB free, "
            f"{needed / 1e6:.1f} MB needed"
        )


def _backup_dir(path: Path) -> Path:
    base = path / f"before_repair_{datetime.now():%Y%m%d_%H%M%S}"
    backup, k = base, 1
    while backup.exists():
        backup, k = Path(f"{base}_{k}"), k + 1
    backup.mkdir()
    return backup


def _keep(src: Path, backup: Path) -> None:
    """The original into the backup folder, without a second copy where links work."""
    try:
        os.link(src, backup / src.name)
    except OSError:
        shutil.copy2(src, backup / src.name)


def _repair_in_place(p: Plan) -> list[str]:
    path = p.bag.path
    _check_space(path, sum(p.bag.files[i].stat().st_size for i in p.rewrite))
    lines = []
    backup = _backup_dir(path) if p.rewrite or p.old_info is not None else None
    for i in p.rewrite:
        src = p.bag.files[i]
        tmp = path / f".{src.name}.repairing"  # no .mcap suffix: no reader takes it for a file
        tmp.unlink(missing_ok=True)  # left by a repair that was itself interrupted
        kept = close_file(p.bag.indexes[i], tmp, p.info)
        _keep(src, backup)
        os.replace(tmp, src)
        lines.append(_closed_line(src.name, kept, p.bag.indexes[i]))
    if p.old_info is not None:
        _keep(path / "metadata.yaml", backup)
    write_metadata(path, p.info, fsync=True)
    lines.append(_metadata_line(p))
    if backup is not None:
        lines.append(f"originals kept in {backup} (delete it once the repaired bag reads well)")
    return lines


def _repair_to(p: Plan, out: Path) -> list[str]:
    if out.exists():
        raise UserError(f"{out}: already exists (a bag is never overwritten)")
    _check_space(out.absolute().parent, sum(f.stat().st_size for f in p.bag.files))
    out.mkdir(parents=True)
    lines = []
    for i, src in enumerate(p.bag.files):
        if i in p.rewrite:
            kept = close_file(p.bag.indexes[i], out / src.name, p.info)
            lines.append(_closed_line(src.name, kept, p.bag.indexes[i]))
        else:
            shutil.copy2(src, out / src.name)
    write_metadata(out, p.info, fsync=True)
    lines.append(_metadata_line(p))
    return lines


def _closed_line(name: str, kept: int, index: McapIndex) -> str:
    return f"closed {name}: {kept} messages kept, {index.torn_bytes} torn bytes dropped"


def _metadata_line(p: Plan) -> str:
    n, files = p.info["message_count"], len(p.info["files"])
    before = "was missing" if p.old_info is None else f"said {p.old_info.get('message_count')}"
    return f"metadata.yaml: {n} messages in {files} file(s) ({before})"


def repair(path: Path, out: Path | None = None) -> list[str]:
    """Repair the bag at `path` (in place, or into the new folder `out`); the lines to print.
    Nothing to do (every file closed, metadata.yaml exact) is one line saying so."""
    p = plan(path)
    if not p.rewrite and not p.metadata_stale:
        return ["nothing to repair (every file is closed and metadata.yaml is exact)"]
    lines = _repair_in_place(p) if out is None else _repair_to(p, out)
    done = open_bag(out or path)
    if done.recovered or done.message_count != p.info["message_count"]:  # never expected
        raise UserError(f"{out or path}: the repair did not check out: {done.recovered}")
    return lines
