"""Settings <-> SageMaker hyperparameters, both directions, in one place.

A job's hyperparameters are its resolved `data`, `model` and `train` settings, named `section__key`
(`train__lr`, `data__splits`, `model__text_model`). The name is a valid shell identifier on purpose: the SageMaker
SDK's container driver (`sagemaker/train/container_drivers/scripts/environment.py`) writes every hyperparameter
as `export SM_HP_<NAME>='<value>'` into a file that `sm_train.sh` sources under `set -e`, and bash refuses a name
such as `SM_HP_TRAIN.LR`, which ends the job before meldctl starts. For the same reason a value may not contain a
single quote: the driver puts values between single quotes without escaping them.

The driver also turns values back into JSON types (`"32"` -> 32, `"true"` -> True) before the job reads them
from `SM_HPS`; `to_hyperparameters` refuses a value that would not come back as the same text, and
`from_hyperparameters` accepts the typed values as well as the strings of `hyperparameters.json`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from meldctl.errors import ConfigError
from meldctl.settings import SECTIONS, Settings, to_plain

SEPARATOR = "__"
SENT_SECTIONS = ("data", "model", "train")
# Settings that only make sense on the submitting machine: the job decides its own folders and never downloads.
LOCAL_ONLY = {
    "data": frozenset({"data_dir", "source", "url", "mirror", "sha256", "workers", "ffmpeg_timeout_s"}),
    "model": frozenset({"checkpoint"}),
    "train": frozenset({"run_dir", "runs_root", "checkpoint_dir", "tensorboard_dir"}),
}
# An unqualified name such as `workers` exists in several sections; the first section here that has it wins
# (`workers` is the DataLoader's, as for `meldctl train --workers`).
_UNQUALIFIED_ORDER = ("train", "model", "data", "remote")
# Keys of the SDK and the SageMaker training toolkit, which are not settings.
_IGNORED_PREFIXES = ("sagemaker_", "_", "mp_parameters")


def hyperparameter_name(section: str, key: str) -> str:
    """`train__lr` for the setting `train.lr`."""
    return f"{section}{SEPARATOR}{key}"


def to_hyperparameters(settings: Settings) -> dict[str, str]:
    """The settings a job needs, as `section__key` hyperparameters with string values.

    Raises:
        ConfigError: a value that the SDK's driver would break (a single quote) or change (`1e5` -> 100000.0).
    """
    plain = to_plain(settings)
    found = {}
    for section in SENT_SECTIONS:
        for key, value in plain[section].items():
            if key in LOCAL_ONLY.get(section, ()) or value is None:
                continue
            name = hyperparameter_name(section, key)
            found[name] = _checked(name, as_text(value))
    return found


def from_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The settings that a job's hyperparameters name, as a `load_settings` layer `{section: {key: value}}`.

    Accepts `section__key` (what meldctl sends), `section.key`, and unqualified `key` or `key-name`, with
    string values or the JSON types that the SDK's driver makes of them.

    Raises:
        ConfigError: an unknown name, or a value that does not fit its setting (the hyperparameter is named).
    """
    layer: dict[str, dict[str, Any]] = {}
    for name, raw in hyperparameters.items():
        target = hyperparameter_target(name)
        if target is None:
            continue
        section, key = target
        text = as_text(raw)
        layer.setdefault(section, {})[key] = _validated(name, section, key, None if text == "" else text)
    return layer


def hyperparameter_target(name: str) -> tuple[str, str] | None:
    """The setting `(section, key)` a hyperparameter names; None for the SDK's own keys (`sagemaker_*`).

    Raises:
        ConfigError: no setting has this name.
    """
    if name.startswith(_IGNORED_PREFIXES):
        return None
    normal = name.strip().lstrip("-").replace("-", "_").lower()
    section, sep, key = normal.partition(SEPARATOR)
    if not sep:
        section, _, key = normal.rpartition(".")
    if section:
        if section in SECTIONS and key in SECTIONS[section].model_fields:
            return section, key
    else:
        for candidate in _UNQUALIFIED_ORDER:
            if key in SECTIONS[candidate].model_fields:
                return candidate, key
    raise ConfigError(
        f"unknown hyperparameter {name!r}",
        hint="name a setting as section__key, e.g. train__lr, model__text_model (see meldctl config show)",
    )


def as_text(value: Any) -> str:
    """A hyperparameter value as the text a setting parses: `true`, `0.001`, `text,audio`, `""` for None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(as_text(v) for v in value)
    if value is None:
        return ""
    return str(value)


def _checked(name: str, text: str) -> str:
    if "'" in text:
        raise ConfigError(
            f"{name} = {text!r}: a single quote breaks the SageMaker driver's environment file",
            hint="rename the folder or value so that it has no ' in it",
        )
    if as_text(_driver_value(text)) != text:
        raise ConfigError(
            f"{name} = {text!r} would reach the job as {as_text(_driver_value(text))!r} "
            "(the SageMaker driver reads values as JSON)",
            hint="write the value so that it reads the same as JSON, e.g. 100000.0 instead of 1e5",
        )
    return text


def _driver_value(text: str) -> Any:
    """What the SDK's driver makes of a string (its `safe_deserialize`): JSON when it parses, else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _validated(name: str, section: str, key: str, value: Any) -> Any:
    """The value as its setting parses it; a bad one names the hyperparameter, not a settings layer."""
    try:
        return getattr(SECTIONS[section].model_validate({key: value}), key)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(
            f"hyperparameter {name} = {value!r}: {error['msg']}",
            hint=f"fix it in the job's hyperparameters (setting {section}.{key})",
        ) from None
