"""YAML configs: strict loading into dataclasses, presets, and ROS parameter files.

Every mistake in a config (missing file, bad YAML, unknown or missing key, wrong type)
raises a `UserError` whose message names the file and the key, so the CLI can print
one line and exit 2.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dmo_ros.errors import UserError

T = TypeVar("T")

# Source checkout (pip -e) or colcon install (share/dmo_ros/config).
_SOURCE_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def config_dir() -> Path:
    """The package's `config/` folder, from a source checkout or a colcon install."""
    if _SOURCE_CONFIG_DIR.is_dir():
        return _SOURCE_CONFIG_DIR
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("dmo_ros")) / "config"
    except Exception as exc:  # no source tree and no ament index: a broken install
        raise UserError("cannot find the dmo_ros config/ folder") from exc


def config_path(name: str | Path) -> Path:
    """A path as given if it exists, else the file of that name in the package's config/."""
    path = Path(name)
    if path.exists() or path.is_absolute() or len(path.parts) > 1:
        return path
    return config_dir() / path


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a `UserError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


def apply_preset(data: Any, preset: str | None, source: str = "config", where: str = "") -> Any:
    """Merge `presets[preset]` over every mapping that has a `presets` key (recursively).

    `presets: {tiny: {...}, cpu: {...}, paper: {...}}` sits beside the defaults it overrides.
    """
    if not isinstance(data, dict):
        return data
    out = {k: apply_preset(v, preset, source, f"{where}{k}.") for k, v in data.items()}
    presets = out.pop("presets", None)
    if presets is None:
        return out
    if preset is None:
        return out
    if preset not in presets:
        raise UserError(
            f"{source}: unknown preset '{preset}' in '{where}presets' "
            f"(have: {', '.join(sorted(presets))})"
        )
    return _merge(out, presets[preset] or {}, source, where)


def _merge(base: dict, over: dict, source: str, where: str) -> dict:
    merged = dict(base)
    for key, value in over.items():
        if key not in base:
            raise UserError(f"{source}: preset sets unknown key '{where}{key}'")
        if isinstance(value, dict) and isinstance(base[key], dict):
            merged[key] = _merge(base[key], value, source, f"{where}{key}.")
        else:
            merged[key] = value
    return merged


def build(cls: type[T], data: Any, source: str = "config", where: str = "") -> T:
    """Build dataclass `cls` from a mapping, refusing unknown keys, missing keys and bad types."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: '{where.rstrip('.') or '<top>'}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(
            f"{source}: unknown key '{where}{unknown[0]}' (expected one of: {', '.join(fields)})"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name not in data:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise UserError(f"{source}: missing key '{where}{name}'")
            continue
        kwargs[name] = _coerce(hints[name], data[name], source, f"{where}{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, key)
            except UserError as exc:
                errors.append(exc)
        raise errors[0]
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise UserError(f"{source}: '{key}' must be a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{source}: '{key}' must be one of {list(args)}, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{source}: '{key}' must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{source}: '{key}' must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{source}: '{key}' must be a string, got {value!r}")
        return value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise UserError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return value
    return value


def load(
    cls: type[T], path: str | Path, section: str | None = None, preset: str | None = None
) -> T:
    """Load `section` of the YAML file at `path` (after presets) into dataclass `cls`."""
    path = config_path(path)
    data = apply_preset(load_yaml(path), preset, str(path))
    if section is not None:
        if section not in data:
            raise UserError(f"{path}: missing key '{section}'")
        data = data[section]
    return build(cls, data, str(path), f"{section}." if section else "")


def ros_parameters(path: str | Path, node_name: str) -> dict[str, Any]:
    """The `ros__parameters` of `node_name` (or of `/**`) in a ROS 2 parameter file."""
    path = config_path(path)
    data = load_yaml(path)
    params: dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict) or "ros__parameters" not in section:
            raise UserError(f"{path}: missing key '{key}.ros__parameters'")
        params.update(section["ros__parameters"] or {})
    return params


def apply_overrides(data: dict[str, Any], sets: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply `--set a.b.c=VALUE` overrides (VALUE parsed as YAML) to existing keys only."""
    out = copy.deepcopy(data)
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"{source} {item!r}: expected KEY=VALUE, e.g. a.b.steps=5")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"{source} {key}: value {text!r} is not valid YAML") from None
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise UserError(f"{source}: unknown config key '{'.'.join(parts[: i + 1])}'")
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return out
