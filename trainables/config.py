"""Typed, validated trial configs: unknown keys and out-of-range values fail loudly with one clear line.

A study declares its config as a dict of `Field`s (the defaults, visible in one block); `validate` returns the
complete config with defaults filled in, or raises `ConfigError` naming the offending key. Sweeps call it on every
grid point in the driver, before anything starts, and the trainable calls it again on entry.
"""
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A config key is unknown, of the wrong type, or out of range."""


@dataclass(frozen=True)
class Field:
    default: Any
    kind: type  # int, float, str, bool, or list (a non-empty list of numbers, kept as floats)
    doc: str
    check: Callable[[Any], bool] | None = None
    requirement: str = ""  # what `check` demands, for the error message
    choices: tuple | None = None


def positive(value) -> bool:
    return value > 0


def non_negative(value) -> bool:
    return value >= 0


def _coerce(key: str, value: Any, field: Field) -> Any:
    if field.kind is list:
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"config key '{key}' must be a non-empty list of numbers, got {value!r}")
        return [_coerce(key, item, Field(None, float, field.doc)) for item in value]
    if field.kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if field.kind in (int, float) and isinstance(value, bool):
        raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
    if field.kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if field.kind is float:
        if not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"config key '{key}' must be finite, got {value!r}")
        return float(value)
    if not isinstance(value, field.kind):
        raise ConfigError(f"config key '{key}' must be a {field.kind.__name__}, got {value!r}")
    return value


def validate(config: Mapping[str, Any], fields: Mapping[str, Field], study: str,
             renamed: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`renamed`: old key -> its current name, so configs saved before a rename (Tune state, checkpoints,
    scripts) still validate."""
    config = rename_keys(config, renamed or {})
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown {study} config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(fields))}"
        )
    full = {}
    for key, field in fields.items():
        value = _coerce(key, config.get(key, field.default), field)
        if field.choices is not None and value not in field.choices:
            raise ConfigError(f"config key '{key}' must be one of {list(field.choices)}, got {value!r}")
        if field.check is not None and not field.check(value):
            raise ConfigError(f"config key '{key}' must be {field.requirement}, got {value!r}")
        full[key] = value
    return full


def rename_keys(config: Mapping[str, Any], renamed: Mapping[str, str]) -> dict[str, Any]:
    both = [old for old, new in renamed.items() if old in config and new in config]
    if both:
        raise ConfigError(f"config key '{both[0]}' is the old name of '{renamed[both[0]]}': give only one of them")
    return {renamed.get(key, key): value for key, value in config.items()}


def describe(fields: Mapping[str, Field]) -> str:
    """One line per key: name, default, meaning (for --help texts and docs)."""
    return "\n".join(f"  {key} = {field.default!r}: {field.doc}" for key, field in fields.items())
