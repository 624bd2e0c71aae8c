"""Reading a user's YAML file into a mapping, with errors that name the file, line and fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.errors import UsageError


def load_yaml_mapping(path: str | os.PathLike, what: str, hint: str = "") -> dict[str, Any]:
    """The top-level mapping of a YAML file. `what` names the file's role ("config",
    "recipe", "price table") in messages; `hint` says where valid examples live."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} {str(path)!r} does not exist" + (f"; {hint}" if hint else ""))
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise yaml_error(p, e, what) from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} {str(path)!r} must be a mapping of keys to values, got {type(data).__name__}")
    return data


def yaml_error(path: Path, error: Exception, what: str) -> UsageError:
    """A YAML parse error as file:line, the form editors jump to."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    return UsageError(f"{where}: {what} is not valid YAML: {getattr(error, 'problem', None) or error}")
