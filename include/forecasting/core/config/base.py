"""What every config section shares: the error, the pydantic base model, the checks of names
and lists, the database a section names, and the translation of pydantic's errors into
messages that name the file, the dotted key, the value given and what is expected."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, get_args, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """A config file that cannot drive a run; the message names the offending key."""


def config_error(path: Path, where: str, message: str) -> ConfigError:
    """``<file>: <dotted key>: <what is wrong>``."""
    return ConfigError(f"{path}: {where or 'config'}: {message}")


def fail(message: str, key: str = "") -> PydanticCustomError:
    """An error a validator raises; ``key`` (relative to where pydantic reports it) is named
    in the message's dotted path."""
    return PydanticCustomError("config", "{message}", {"message": message, "key": key})


def exactly_one(first: str, second: str, values: tuple[Any, Any]) -> None:
    """Refuse a section that sets both or neither of two keys (e.g. table and query)."""
    if (values[0] is None) == (values[1] is None):
        raise PydanticCustomError(
            "exactly_one", "set exactly one of {first} and {second}", {"first": first, "second": second}
        )


class Section(BaseModel):
    """A config section: immutable, strictly typed (no "3" for 3), unknown keys refused.

    Validated with a context (``{"base": <the config file's folder>, ...}``), the input is the
    mapping as written in the file: ``from_file`` turns it into the model's fields. Built
    directly in code, the fields are given as they are.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    @classmethod
    def file_keys(cls) -> list[str]:
        """The keys the section takes in the file."""
        return sorted(cls.model_fields)

    @classmethod
    def from_file(cls, data: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """The fields of the section as written in the file (``data`` is a copy)."""
        return data

    @model_validator(mode="before")
    @classmethod
    def _as_written(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is None:
            return data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise fail(f"must be a mapping, got {data!r}")
        unknown = sorted(str(k) for k in data if k not in cls.file_keys())
        if unknown:
            raise PydanticCustomError(
                "unknown_key", "unknown key", {"key": unknown[0], "allowed": ", ".join(cls.file_keys())}
            )
        return cls.from_file(dict(data), info.context)


# --- checks shared by several sections --------------------------------------------------------


def identifier(value: Any) -> Any:
    """A plain column name (letters, digits and underscores)."""
    if value is None:
        raise fail("is required")
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise fail(f"must be a plain column name, got {value!r}")
    return value


def identifiers(value: Any) -> Any:
    """A list of plain column names (null: none)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and IDENTIFIER.match(v) for v in value):
        raise fail(f"must be a list of plain column names, got {value!r}")
    return value


def positive_ints(value: Any) -> Any:
    """A non-empty list of positive whole numbers, sorted, each once."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise fail(f"must be a non-empty list of positive whole numbers, got {value!r}")
    return sorted(set(value))


def choices(value: Any, allowed: Iterable[str]) -> Any:
    """A list of names from ``allowed``, each once, in the file's order (null: none)."""
    allowed = tuple(allowed)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v in allowed for v in value):
        raise fail(f"must be a list of {', '.join(allowed)} (or [] for none), got {value!r}")
    return list(dict.fromkeys(value))


# --- databases --------------------------------------------------------------------------------


@overload
def hide_password(url: str) -> str: ...
@overload
def hide_password(url: None) -> None: ...
def hide_password(url: str | None) -> str | None:
    """``scheme://user:secret@host/db?password=secret`` with both secrets shown as ***."""
    if url is None:
        return None
    url = re.sub(r"(://[^/?#@:]*:)[^/?#@]*@", r"\1***@", url)
    return re.sub(r"([?&](?:password|passwd|pwd)=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


class Database(BaseModel):
    """A database named either by a SQLAlchemy URL or by an Airflow connection id."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    url: str | None = Field(
        default=None,
        description="A SQLAlchemy URL (a relative sqlite:/// path starts at the config's folder).",
    )
    conn_id: str | None = Field(default=None, description="An Airflow connection id, instead of url.")
    schema_: str | None = Field(
        default=None, alias="schema", description="The database schema the tables are in."
    )

    @property
    def schema(self) -> str | None:  # type: ignore[override]  # BaseModel.schema is pydantic v1's
        return self.schema_

    def __repr__(self) -> str:
        # A traceback or a test report may print a config: never with the password in it.
        return f"Database(url={hide_password(self.url)!r}, conn_id={self.conn_id!r}, schema={self.schema!r})"


DATABASE_KEYS = ("url", "conn_id", "schema")


def with_database(data: dict[str, Any], base: Path, inherited: Database | None = None) -> dict[str, Any]:
    """``data`` with its url, conn_id and schema keys made into its ``database``; without a url
    or conn_id (and ``inherited`` given), the inherited database's, in its own schema if it
    names one."""
    written = {key: data.pop(key) for key in DATABASE_KEYS if key in data}
    for key, value in written.items():
        if value is not None and not isinstance(value, str):
            raise fail(f"must be str, got {value!r}", key)
    url, conn_id = written.get("url"), written.get("conn_id")
    if inherited is not None and url is None and conn_id is None:
        schema = written["schema"] if "schema" in written else inherited.schema
        data["database"] = Database(url=inherited.url, conn_id=inherited.conn_id, schema=schema)
        return data
    exactly_one("url", "conn_id", (url, conn_id))
    url = resolve_sqlite_url(url, base) if url else None
    data["database"] = Database(url=url, conn_id=conn_id, schema=written.get("schema"))
    return data


def resolve_path(value: str, base: Path) -> Path:
    """``value`` as an absolute path; a relative one starts at ``base``."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def resolve_sqlite_url(url: str, base: Path) -> str:
    """Make the path of a relative ``sqlite:///`` URL relative to ``base``."""
    prefix, sep, rest = url.partition(":///")
    if not sep or not prefix.startswith("sqlite") or rest.startswith("/") or rest in ("", ":memory:"):
        return url
    path, q, query = rest.partition("?")
    return f"{prefix}:///{resolve_path(path, base)}{q}{query}"


# --- pydantic's errors as the config's -------------------------------------------------------

_KINDS = {
    "int_type": "int",
    "float_type": "float",
    "bool_type": "bool",
    "string_type": "str",
    "dict_type": "dict",
    "list_type": "list",
}


def dotted(name: str, loc: Iterable[Any]) -> str:
    """``alerts`` and ``("notifiers", 0, "to")``: ``alerts.notifiers[0].to``."""
    out = name
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part:
            out = f"{out}.{part}" if out else str(part)
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field's annotation holds (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _field_at(model: type[BaseModel], loc: Iterable[Any]) -> FieldInfo | None:
    """The field of ``model`` (or of a section in it) at pydantic's error location ``loc``."""
    info, current = None, _model_in(model)
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None or part not in current.model_fields:
            return None
        info = current.model_fields[part]
        current = _model_in(info.annotation)
    return info


def _what_it_is(info: FieldInfo | None) -> str:
    """`` (<the field's description>)``, for "is required"."""
    if info is None or not info.description:
        return ""
    return f" ({info.description[:1].lower()}{info.description[1:].rstrip('.')})"


def refused(err: ValidationError, path: Path, name: str, model: type[BaseModel]) -> ConfigError:
    """The first of pydantic's errors validating ``model``, section ``name`` of the file, as a
    ConfigError naming the key."""
    first = err.errors(include_url=False)[0]
    info = _field_at(model, first["loc"])
    ctx = first.get("ctx") or {}
    section = dotted(name, first["loc"])
    where = dotted(section, [ctx.get("key", "")])
    kind, value = first["type"], first.get("input")
    if kind == "unknown_key":
        message = "unknown key"
        allowed = ctx["allowed"].split(", ")
        close = difflib.get_close_matches(ctx["key"], allowed, n=1)
        if close:
            message += f" (did you mean {close[0]}?)"
        message += f" (expected one of: {ctx['allowed']})"
    elif kind == "config":
        message = ctx["message"]
    elif kind == "exactly_one":
        message = f"set exactly one of {section}.{ctx['first']} and {section}.{ctx['second']}"
    elif kind == "missing":
        message = "is required" + _what_it_is(info)
    elif kind in _KINDS:
        message = f"must be {_KINDS[kind]}, got {value!r}"
        if value is None and info is not None and not info.is_required():
            message += f" (leave it out for the default, {info.get_default(call_default_factory=True)!r})"
    elif kind == "greater_than_equal":
        if isinstance(ctx["ge"], float) and isinstance(value, int):
            value = float(value)  # as the field holds it
        message = f"must be at least {ctx['ge']}, got {value!r}"
    else:
        message = first["msg"][:1].lower() + first["msg"][1:]
    return config_error(path, where, message)
