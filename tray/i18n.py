"""Translations for the tray and the dialogs (gettext, domain ``eid-agent``).

Catalogs live in ``tray/locale/<lang>/LC_MESSAGES/eid-agent.po`` with the compiled ``.mo``
next to them. The standard library has no ``msgfmt``, so this module carries a small one:

    python -m tray.i18n compile     # rewrite every .mo from its .po
    python -m tray.i18n check       # exit 1 when a .mo is missing or stale

The language comes from the request (a page may say ``lang``), else from the OS locale,
else English. Only :data:`LANGUAGES` are offered.
"""

from __future__ import annotations

import ast
import gettext
import locale
import logging
import os
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

DOMAIN = "eid-agent"
LANGUAGES = ("en", "nl", "fr", "de")
DEFAULT_LANGUAGE = "en"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

__all__ = [
    "DOMAIN",
    "LANGUAGES",
    "LOCALE_DIR",
    "N_",
    "Catalog",
    "compile_po",
    "os_language",
    "parse_po",
    "resolve_language",
    "source_messages",
    "translator",
]


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Mark a string for extraction without translating it yet."""
    return message


def _normalise(tag: str | None) -> str | None:
    """``nl_BE.UTF-8`` / ``fr-CA`` / ``de`` -> ``nl`` / ``fr`` / ``de``; None for others."""
    if not tag:
        return None
    base = tag.replace("-", "_").split(".")[0].split("@")[0].split("_")[0].lower()
    return base if base in LANGUAGES else None


def _windows_ui_language() -> str | None:
    if sys.platform != "win32":
        return None
    import ctypes

    lang_id = ctypes.windll.kernel32.GetUserDefaultUILanguage()  # type: ignore[attr-defined]
    return locale.windows_locale.get(lang_id)


def os_language() -> str:
    """The user's language from the environment/OS, limited to :data:`LANGUAGES`."""
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            # LANGUAGE may be a priority list: "nl:en"
            for part in value.split(":"):
                found = _normalise(part)
                if found:
                    return found
            if var != "LANGUAGE":
                break  # a set LC_ALL/LC_MESSAGES/LANG wins, even when unsupported
    found = _normalise(_windows_ui_language())
    if found:
        return found
    with_locale = locale.getlocale(locale.LC_CTYPE)[0]
    return _normalise(with_locale) or DEFAULT_LANGUAGE


def resolve_language(requested: str | None = None) -> str:
    """The requested language when we have it, otherwise the OS language."""
    return _normalise(requested) or os_language()


@cache
def translator(lang: str | None = None) -> gettext.NullTranslations:
    """The catalog for ``lang`` (resolved as :func:`resolve_language` does)."""
    language = resolve_language(lang)
    try:
        return gettext.translation(DOMAIN, localedir=str(LOCALE_DIR), languages=[language])
    except OSError:
        logger.warning("no compiled catalog for %s; using English", language)
        return gettext.NullTranslations()


# --- a tiny msgfmt ---------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    msgid: str
    msgid_plural: str | None
    msgstr: tuple[str, ...]  # one entry, or one per plural form

    @property
    def translated(self) -> bool:
        return all(self.msgstr)


@dataclass(frozen=True)
class Catalog:
    header: str
    messages: tuple[Message, ...]

    def by_id(self) -> dict[str, Message]:
        return {m.msgid: m for m in self.messages}


def _unquote(token: str) -> str:
    value = ast.literal_eval(token)
    if not isinstance(value, str):
        raise ValueError(f"not a string: {token!r}")
    return value


def parse_po(text: str) -> Catalog:
    """Parse a .po file (no msgctxt, no obsolete entries)."""
    entries: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key: str | None = None

    def flush() -> None:
        nonlocal current
        if "msgid" in current:
            entries.append(current)
        current = {}

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
            key = None
            continue
        if line.startswith("#"):
            continue
        if line.startswith('"'):
            if key is None:
                raise ValueError(f"continuation without keyword: {raw!r}")
            current[key] += _unquote(line)
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgid":
            flush()
        key = keyword
        current[key] = _unquote(rest)
    flush()

    header = ""
    messages: list[Message] = []
    for entry in entries:
        if entry["msgid"] == "":
            header = entry.get("msgstr", "")
            continue
        plural = entry.get("msgid_plural")
        if plural is None:
            strings: tuple[str, ...] = (entry.get("msgstr", ""),)
        else:
            strings = tuple(
                entry[k]
                for k in sorted(
                    (k for k in entry if k.startswith("msgstr[")),
                    key=lambda k: int(k[7:-1]),
                )
            )
        messages.append(Message(entry["msgid"], plural, strings))
    return Catalog(header, tuple(messages))


def compile_po(catalog: Catalog) -> bytes:
    """The GNU .mo bytes for ``catalog`` (untranslated entries are left out, as msgfmt does)."""
    pairs: dict[bytes, bytes] = {b"": catalog.header.encode("utf-8")}
    for message in catalog.messages:
        if not message.translated:
            continue
        if message.msgid_plural is None:
            key = message.msgid.encode("utf-8")
        else:
            key = (message.msgid + "\0" + message.msgid_plural).encode("utf-8")
        pairs[key] = "\0".join(message.msgstr).encode("utf-8")
    keys = sorted(pairs)
    ids = b"".join(k + b"\0" for k in keys)
    strs = b"".join(pairs[k] + b"\0" for k in keys)
    count = len(keys)
    keys_start = 7 * 4
    values_start = keys_start + count * 8
    ids_start = values_start + count * 8
    strs_start = ids_start + len(ids)
    key_table: list[int] = []
    value_table: list[int] = []
    id_offset = str_offset = 0
    for k in keys:
        key_table += [len(k), ids_start + id_offset]
        id_offset += len(k) + 1
        value_table += [len(pairs[k]), strs_start + str_offset]
        str_offset += len(pairs[k]) + 1
    head = struct.pack("<7I", 0x950412DE, 0, count, keys_start, values_start, 0, 0)
    tables = struct.pack(f"<{len(key_table)}I", *key_table)
    tables += struct.pack(f"<{len(value_table)}I", *value_table)
    return head + tables + ids + strs


def catalog_paths(lang: str) -> tuple[Path, Path]:
    folder = LOCALE_DIR / lang / "LC_MESSAGES"
    return folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"


def stale_catalogs() -> list[str]:
    """Languages whose committed .mo does not match what their .po compiles to."""
    stale = []
    for lang in LANGUAGES:
        po, mo = catalog_paths(lang)
        expected = compile_po(parse_po(po.read_text(encoding="utf-8")))
        if not mo.exists() or mo.read_bytes() != expected:
            stale.append(lang)
    return stale


def compile_all() -> None:
    for lang in LANGUAGES:
        po, mo = catalog_paths(lang)
        mo.write_bytes(compile_po(parse_po(po.read_text(encoding="utf-8"))))
        logger.info("compiled %s", mo)


# --- extraction check --------------------------------------------------------------------


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def source_messages(files: Iterable[Path]) -> set[str]:
    """Every literal passed to ``_``/``N_``/``gettext`` (and the singular of ``ngettext``)."""
    found: set[str] = set()
    for file in files:
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for call in _calls(tree):
            name = _callee(call)
            if name in ("_", "N_", "gettext", "ngettext") and call.args:
                first = call.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args == ["compile"]:
        compile_all()
        return 0
    if args == ["check"]:
        stale = stale_catalogs()
        if stale:
            print("stale .mo files:", ", ".join(stale), "- run python -m tray.i18n compile")
            return 1
        return 0
    print("usage: python -m tray.i18n compile|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
