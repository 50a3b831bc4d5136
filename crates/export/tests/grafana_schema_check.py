"""Checks dashboard JSON files against grafana-foundation-sdk's typed models, which Grafana generates from its own
dashboard schema: every key must be one the models know (a round trip through them keeps it, with its value), and
every value must have the type, or be one of the enum values, that the models declare. Prints each problem and
exits 1 if there is any; run by crates/export/tests/grafana_schema.rs."""

import enum
import json
import sys
import typing

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

# Panel options and queries are typed by their plugin (timeseries, text, prometheus): without the plugins they
# would be read as untyped objects and pass unchecked.
register_default_plugins()

SCALARS = (str, int, float, bool)


def leaves(value, path=""):
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from leaves(inner, f"{path}.{key}")
    elif isinstance(value, list) and value:
        for index, inner in enumerate(value):
            yield from leaves(inner, f"{path}[{index}]")
    else:
        yield path, value


def type_problems(value, hint, path):
    """What is wrong with `value` for the declared `hint` (empty when it fits)."""
    if value is None:
        return []
    if hint is typing.Any or hint is object:
        # Declared loosely (a panel's options), but read into a plugin's model: check it as that model.
        typed = type(value).__module__.startswith("grafana_foundation_sdk.models")
        return model_problems(value, path) if typed else []
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        arms = [type_problems(value, arm, path) for arm in args if arm is not type(None)]
        return [] if any(not arm for arm in arms) else min(arms, key=len)
    if origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {value!r} is not a list"]
        return [p for i, item in enumerate(value) for p in type_problems(item, args[0], f"{path}[{i}]")]
    if origin is dict:
        return [] if isinstance(value, dict) else [f"{path}: {value!r} is not an object"]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [member.value for member in hint]
        ok = isinstance(value, hint) or value in allowed
        return [] if ok else [f"{path}: {value!r} is not one of {allowed}"]
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} is not a number"]
    if hint in SCALARS:
        ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
        return [] if ok else [f"{path}: {value!r} is not {hint.__name__}"]
    if isinstance(hint, type):
        if not isinstance(value, hint):
            return [f"{path}: {type(value).__name__} where {hint.__name__} belongs"]
        return model_problems(value, path)
    return []


def model_problems(model, path):
    try:
        hints = typing.get_type_hints(type(model))
    except (NameError, TypeError):
        hints = {}
    return [p for name, hint in hints.items() for p in type_problems(getattr(model, name, None), hint, f"{path}.{name}")]


def problems(document):
    dashboard = Dashboard.from_json(document)
    found = model_problems(dashboard, "dashboard")
    kept = dict(leaves(json.loads(json.dumps(dashboard, cls=JSONEncoder))))
    for path, value in leaves(document):
        if path not in kept:
            found.append(f"{path}: not in the dashboard schema")
        elif kept[path] != value:
            found.append(f"{path}: {value!r} read back as {kept[path]!r}")
    return found


def main():
    failed = False
    for name in sys.argv[1:]:
        with open(name, encoding="utf-8") as file:
            found = problems(json.load(file))
        for problem in found:
            print(f"{name}: {problem}")
        failed |= bool(found)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
