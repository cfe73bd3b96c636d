"""Environment references in config values: ``os.environ/NAME``, ``${NAME}``, ``${NAME:-default}``."""

from __future__ import annotations

import re
from typing import Any, Mapping

_ENV_WHOLE = re.compile(r"^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")
_ENV_INLINE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MissingEnv(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def resolve_env(value: Any, env: Mapping[str, str]) -> Any:
    """Replace ``os.environ/NAME``, ``${NAME}`` and ``${NAME:-default}`` in strings, recursively."""
    if isinstance(value, str):
        whole = _ENV_WHOLE.match(value)
        if whole:
            if whole.group(1) not in env:
                raise MissingEnv(whole.group(1))
            return env[whole.group(1)]

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if env.get(name):
                return env[name]
            if default is not None:  # ${NAME:-default}
                return default
            if name not in env:
                raise MissingEnv(name)
            return env[name]

        return _ENV_INLINE.sub(sub, value)
    if isinstance(value, dict):
        return {k: resolve_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, env) for v in value]
    return value
