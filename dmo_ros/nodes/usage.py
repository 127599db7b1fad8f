"""`<node> --help`: what a node executable does and its parameters, read from its source.

The parameters are read from the node class's own declarations (`declare(self, ...)` and
`self.declare_parameter(...)` calls) rather than by building the node: building one starts
its simulator, connects to its robot or opens a bag. test_node_help.py checks the list
against the parameters a built node has.
"""

from __future__ import annotations

import ast
import inspect
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class Param:
    name: str
    default: Any
    description: str
    low: Any = None
    high: Any = None


def _value(expr: ast.expr | None, namespace: dict) -> Any:
    if expr is None:
        return None
    try:
        return ast.literal_eval(expr)
    except ValueError:
        pass
    try:  # a module constant or arithmetic on constants (STATUS_TOPICS, 2**31 - 1)
        return eval(compile(ast.Expression(expr), "<parameter>", "eval"), namespace)
    except Exception:
        return ast.unparse(expr)


def _descriptions(cls_tree: ast.ClassDef) -> dict[str, ast.expr]:
    """Variables bound to `ParameterDescriptor(description=...)`: name -> description."""
    out = {}
    for node in ast.walk(cls_tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", "") == "ParameterDescriptor"
        ):
            for kw in node.value.keywords:
                if kw.arg == "description":
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            out[target.id] = kw.value
    return out


def _arg(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((kw.value for kw in call.keywords if kw.arg == keyword), None)


def node_parameters(node_class: type) -> tuple[str, list[Param]]:
    """The node's name (its `super().__init__("name")`) and its parameters in source order."""
    module = sys.modules[node_class.__module__]
    tree = ast.parse(inspect.getsource(module))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == node_class.__name__]
    ns = vars(module)
    described = _descriptions(cls)
    name, params = None, []
    calls = [n for n in ast.walk(cls) if isinstance(n, ast.Call)]
    for call in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "__init__" and call.args:
            name = name or _value(call.args[0], ns)  # super().__init__("recorder", ...)
        elif isinstance(func, ast.Name) and func.id == "declare":  # params.declare(self, ...)
            params.append(
                Param(
                    _value(_arg(call, 1, "name"), ns),
                    _value(_arg(call, 2, "default"), ns),
                    _value(_arg(call, 3, "description"), ns),
                    _value(_arg(call, 4, "low"), ns),
                    _value(_arg(call, 5, "high"), ns),
                )
            )
        elif isinstance(func, ast.Attribute) and func.attr == "declare_parameter":
            descriptor = _arg(call, 2, "descriptor")
            text = described.get(getattr(descriptor, "id", ""))
            params.append(
                Param(
                    _value(_arg(call, 0, "name"), ns),
                    _value(_arg(call, 1, "value"), ns),
                    _value(text, ns) or "",
                )
            )
    return name or node_class.__name__, params


def usage(node_class: type, executable: str) -> str:
    module = sys.modules[node_class.__module__]
    summary = (inspect.getdoc(module) or "").split("\n\n")[0]
    name, params = node_parameters(node_class)
    params.append(Param("use_sim_time", False, "run on the /clock topic's time (ROS standard)"))
    width = max(len(p.name) for p in params)
    lines = [
        f"usage: ros2 run dmo_ros {executable} [--ros-args -p NAME:=VALUE ... --params-file FILE]",
        "",
        summary,
        "",
        f"parameters of node '{name}':",
    ]
    for p in params:
        bounds = f", range {p.low}..{p.high}" if p.low is not None and p.high is not None else ""
        lines.append(f"  {p.name:<{width}}  {p.description} (default {p.default!r}{bounds})")
    return "\n".join(lines)
