"""Student-facing text: ``templates/messages/<lang>.toml`` (shipped as ``grader.templates``).

Every sentence a student reads (check titles, status words, messages with ``{placeholders}``,
hints, flags, the words of the terminal rubric) lives in those files, in Spanish and in English,
never in Python strings. A key missing in one language falls back to the other, so a half
translated file degrades to mixed text instead of a crash.
"""

from __future__ import annotations

import os
import string
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping

from .errors import GraderError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LANGS = ("es", "en")
DEFAULT_LANG = "es"
_ENV_VARS = ("LC_ALL", "LC_MESSAGES", "LANG")


def resolve_lang(option: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``--lang`` if given, else the first of $LC_ALL/$LC_MESSAGES/$LANG naming es_* or en_*, else es."""
    if option:
        lang = option.strip().lower()[:2]
        if lang not in LANGS:
            raise GraderError(f"unknown language {option!r} (known: {', '.join(LANGS)})")
        return lang
    env = os.environ if environ is None else environ
    for var in _ENV_VARS:
        code = env.get(var, "").strip().lower()[:2]
        if code in LANGS:
            return code
    return DEFAULT_LANG


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True)
class Messages:
    """The message table of one language, with the other as fallback."""

    lang: str
    table: Mapping[str, Any]
    fallback: Mapping[str, Any]
    _seen: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def text(self, key: str, **values: Any) -> str:
        """The template at dotted ``key`` with ``values`` filled in (unknown placeholders kept)."""
        template = self._template(key)
        if not isinstance(template, str):
            return key
        return string.Formatter().vformat(template, (), _Blank(values))

    def has(self, key: str) -> bool:
        return isinstance(self._template(key), str)

    def _template(self, key: str) -> Any:
        """The template at ``key``, else the fallback's, else None (looked up once per key)."""
        if key not in self._seen:
            found = _lookup(self.table, key)
            self._seen[key] = _lookup(self.fallback, key) if found is None else found
        return self._seen[key]

    def join(self, items: Iterable[str]) -> str:
        """'a', 'a y b', 'a, b y c' (with the language's word for "and")."""
        items = [str(i) for i in items]
        if len(items) <= 1:
            return "".join(items)
        return ", ".join(items[:-1]) + f" {self.text('ui.and')} " + items[-1]

    def cells(self, numbers: Iterable[int]) -> str:
        """'cell 7' / 'cells 7 and 9' ('celda 7' / 'celdas 7 y 9')."""
        nums = list(dict.fromkeys(numbers))
        if len(nums) == 1:
            return self.text("ui.cell", n=nums[0])
        return self.text("ui.cells", list=self.join(str(n) for n in nums))


def _lookup(table: Mapping[str, Any], key: str) -> Any:
    node: Any = table
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


@lru_cache(maxsize=4)
def _table(lang: str) -> Mapping[str, Any]:
    res = resources.files("grader.templates") / "messages" / f"{lang}.toml"
    try:
        return tomllib.loads(res.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GraderError(f"templates/messages/{lang}.toml: cannot read the messages ({exc})") from None


@lru_cache(maxsize=4)
def load(lang: str) -> Messages:
    if lang not in LANGS:
        raise GraderError(f"unknown language {lang!r} (known: {', '.join(LANGS)})")
    other = next(x for x in LANGS if x != lang)
    return Messages(lang, _table(lang), _table(other))
