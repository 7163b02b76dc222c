"""The ``feature_store`` section checked by Feast itself: every part of it built by Feast's own
models at once, so that a typo is refused at deploy time rather than silently defaulted.
Feast is imported inside these functions only: it takes seconds, and loading a config must not."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from forecasting.core.config import Config, ConfigError
from forecasting.core.config.base import config_error


class _Where:
    """A mapping of the feature_store section with its dotted name, for messages naming the key."""

    def __init__(self, raw: Any, name: str, path: Path):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: {name} must be a mapping")
        self.raw, self.name, self.path = raw, name, path

    def error(self, key: str, message: str) -> ConfigError:
        return config_error(self.path, ".".join(p for p in (self.name, key) if p), message)


# What the pipeline assumes where the section says nothing (Feast's own defaults in 0.67).
FEAST_DEFAULTS: dict[str, Any] = {"provider": "local", "entity_key_serialization_version": 3}


def feast_repo_config(config: Config):
    """Feast's ``RepoConfig`` of the ``feature_store`` section, every part of it built and checked
    by Feast's own models; a key Feast does not know or a value it refuses is a ConfigError naming
    the key path (``feature_store.online_store.pathh: ...``). Imports Feast.

    Feast itself accepts unknown top-level keys (``onlin_store:`` would silently mean the default
    SQLite online store) and builds the nested store configs, which refuse unknown keys, only when
    first used. Here they are all built at once. No message quotes a value: a registry URL may
    hold a password.
    """
    return _feast_repo_config({**FEAST_DEFAULTS, **config.feature_store}, config.path)


def _feast_repo_config(settings: dict[str, Any], path: Path):
    from feast import repo_config as feast
    from feast.infra.provider import PROVIDERS_CLASS_FOR_TYPE

    settings = copy.deepcopy(settings)  # Feast's validators fill in defaults in place
    section = _Where(settings, "feature_store", path)
    keys = _model_keys(feast.RepoConfig) - {"repo_path"}  # the pipeline sets repo_path
    unknown = sorted(str(k) for k in settings if k not in keys)
    if unknown:
        raise section.error(unknown[0], f"unknown key (Feast's keys: {', '.join(sorted(keys))})")
    if "registry" not in settings:
        raise section.error("registry", "is required (a file path, or a mapping with registry_type and path)")
    provider = settings.get("provider")
    if isinstance(provider, str) and "." not in provider and provider not in PROVIDERS_CLASS_FOR_TYPE:
        raise section.error(
            "provider",
            f"{provider!r} is not a provider Feast knows ({', '.join(sorted(PROVIDERS_CLASS_FOR_TYPE))})",
        )
    auth = settings.get("auth")
    if auth is not None:
        if not isinstance(auth, dict):
            raise section.error("auth", f"must be a mapping, got {type(auth).__name__}")
        if auth.get("type") not in feast.ALLOWED_AUTH_TYPES:
            raise _Where(auth, "feature_store.auth", path).error(
                "type", f"must be one of {', '.join(feast.ALLOWED_AUTH_TYPES)}"
            )

    _check_nested(settings, path)
    repo = _feast_call(section, "", lambda: feast.RepoConfig(**settings), model=feast.RepoConfig)
    _build_lazy(repo, settings, path)
    return repo


def _check_nested(settings: dict[str, Any], path: Path) -> None:
    """The nested sections, each built with the model Feast picks for it (RepoConfig's
    validators build some of them, but their errors would not say which section they are about)."""
    from feast import repo_config as feast

    section = _Where(settings, "feature_store", path)
    # key: (the key naming its type, its default, Feast's types, Feast's lookup of a type's model)
    nested = {
        "registry": (
            "registry_type",
            None,
            feast.REGISTRY_CLASS_FOR_TYPE,
            feast.get_registry_config_from_type,
        ),
        "online_store": (
            "type",
            "sqlite",
            feast.ONLINE_STORE_CLASS_FOR_TYPE,
            feast.get_online_config_from_type,
        ),
        "offline_store": (
            "type",
            "dask",
            feast.OFFLINE_STORE_CLASS_FOR_TYPE,
            feast.get_offline_config_from_type,
        ),
        "batch_engine": (
            "type",
            None,
            feast.BATCH_ENGINE_CLASS_FOR_TYPE,
            feast.get_batch_engine_config_from_type,
        ),
        "feature_server": (
            "type",
            "local",
            feast.FEATURE_SERVER_CONFIG_CLASS_FOR_TYPE,
            feast.get_feature_server_config_from_type,
        ),
    }
    for key, (type_key, default, types, lookup) in nested.items():
        value = settings.get(key)
        kind: Any
        if value is None or (key == "online_store" and str(value).lower() in ("none", "null")):
            continue
        if isinstance(value, str):
            kind, values = value, {}
        elif isinstance(value, dict):
            kind, values = value.get(type_key, default), value
        else:
            shape = "a file path or a mapping" if key == "registry" else "a mapping or a type name"
            raise section.error(key, f"must be {shape}, got {type(value).__name__}")
        where = _Where(values, f"feature_store.{key}", path)
        if key == "registry" and (isinstance(value, str) or kind is None):
            model = feast.RegistryConfig  # a file path or URI, or a mapping without registry_type
            values = {"path": value} if isinstance(value, str) else values
        elif not isinstance(kind, str):
            raise where.error(type_key, "is required" if kind is None else "must be a type name")
        else:
            hint = f"Feast's types: {', '.join(sorted(t for t in types if not t.startswith('feast.')))}"
            model = _feast_call(where, type_key, lambda kind=kind, lookup=lookup: lookup(kind), (kind, hint))
        _checked(where, lambda model=model, values=values: model(**values), model)


def _build_lazy(repo: Any, settings: dict[str, Any], path: Path) -> None:
    """Build the parts of ``repo`` Feast builds on first use, now, through Feast's own code;
    and check the typed settings RepoConfig builds itself (materialization, ...) for unknown keys."""
    from feast import repo_config as feast

    for key, attribute in [
        ("registry", "registry"),
        ("online_store", "online_store"),
        ("offline_store", "offline_store"),
        ("batch_engine", "batch_engine"),
        ("auth", "auth_config"),
    ]:
        given = settings.get(key) if isinstance(settings.get(key), dict) else None
        _checked(
            _Where(given, f"feature_store.{key}", path),
            lambda attribute=attribute: getattr(repo, attribute),
        )
    for name, info in feast.RepoConfig.model_fields.items():
        value = getattr(repo, name, None)
        if isinstance(value, BaseModel) and (info.alias or name) in settings:
            _checked(
                _Where(settings[info.alias or name], f"feature_store.{info.alias or name}", path),
                lambda v=value: v,
            )


def _model_keys(model: type) -> set[str]:
    """The keys a pydantic model reads: each field's alias, else its name."""
    return {f.alias or name for name, f in model.model_fields.items()}  # type: ignore[attr-defined]


def _checked(where: _Where, build, model: type | None = None):
    """Build a Feast settings model from the mapping ``where``; a key the model has no field for
    is refused, also where the model itself would keep or drop it silently."""
    built = _feast_call(where, "", build, model=model)
    fields = getattr(type(built), "model_fields", None)
    if fields is not None and where.raw:
        allowed = {*fields, *(f.alias for f in fields.values() if f.alias)}
        unknown = sorted(str(k) for k in where.raw if k not in allowed)
        if unknown:
            keys = ", ".join(sorted(_model_keys(type(built))))
            raise where.error(unknown[0], f"unknown key ({type(built).__name__}'s keys: {keys})")
    return built


def _feast_call(
    where: _Where, key: str, call, lookup: tuple[str, str] | None = None, model: type | None = None
):
    """``call()``; its failure is a ConfigError naming the key, and quoting no value.

    ``lookup`` (type name, hint) when ``call`` looks a type name up; ``model`` when it builds one.
    """
    from feast.errors import FeastError

    try:
        return call()
    except ValidationError as err:
        problems = err.errors(include_url=False, include_input=False, include_context=False)
        first = problems[0]
        at = ".".join(p for p in (key, *map(str, first["loc"])) if p)
        message = _scrub(first["msg"][:1].lower() + first["msg"][1:], where.raw)
        if first["type"] == "extra_forbidden" and model is not None and err.title == model.__name__:
            message += f" ({model.__name__}'s keys: {', '.join(sorted(_model_keys(model)))})"
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more)"
        raise where.error(at, message) from None
    except (FeastError, ImportError, AssertionError, KeyError, TypeError, AttributeError, ValueError) as err:
        # Unknown type names (Feast imports them as classes), missing keys, wrong shapes.
        detail = str(err).strip() if isinstance(err, FeastError | ImportError) else ""
        detail = _scrub(detail or f"{type(err).__name__}: {err}".rstrip(": "), where.raw)
        if lookup is not None:
            kind, hint = lookup
            hint = detail if isinstance(err, ImportError) else hint
            raise where.error(key, f"{kind!r} is not a type Feast knows ({hint})") from None
        raise where.error(key, f"refused by Feast: {detail}") from None


def _scrub(text: str, values: Any) -> str:
    """``text`` without the URLs and connection strings among ``values`` (they may hold passwords)."""
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, list):
        for value in values:
            text = _scrub(text, value)
    elif isinstance(values, str) and len(values) >= 8 and re.search(r"[:/@=]", values):
        text = text.replace(values, "***")
    return text
