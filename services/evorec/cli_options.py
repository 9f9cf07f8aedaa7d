"""Options shared by the `evorec` commands, and options built from config dataclasses.

`config_options` turns each field of a dataclass parameter of a command into its own
`--option` with the field's default and help, so that a default is written once, in the
dataclass (`evorec.encoder.config`), whichever command exposes it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from evorec.platform.config import CONFIG_FILE_ENV

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=f"TOML settings file (else ${CONFIG_FILE_ENV}); EVOREC_* variables override it.",
        dir_okay=False,
    ),
]
DatasetArgument = Annotated[
    Path | None, typer.Argument(help="A prepared dataset (default: the configured one).")
]
PresetOption = Annotated[
    str | None,
    typer.Option(
        help="Settings saved by `evorec tune` (<dataset>/presets/NAME.json, or a .json path); "
        "options given explicitly override it."
    ),
]
Command = TypeVar("Command", bound=Callable[..., Any])


def explicit_options(context: typer.Context) -> set[str]:
    """The parameters of the running command given on its command line or by environment,
    not left at their default: the options that a preset must not override."""
    defaulted = {"DEFAULT", "DEFAULT_MAP"}
    return {
        name
        for name in context.params
        if (source := context.get_parameter_source(name)) is not None
        and source.name not in defaulted
    }


def config_options(*, omit: tuple[str, ...] = ()) -> Callable[[Command], Command]:
    """Replaces each parameter of a command whose type is a dataclass by one option per field;
    the command is called with the dataclasses built from those options. Fields in `omit`,
    and those whose metadata says `option: False`, are no options and keep their default."""
    return functools.partial(_with_config_options, omit=omit)


def _with_config_options(command: Command, omit: tuple[str, ...]) -> Command:
    hints = typing.get_type_hints(command, include_extras=True)
    signature = inspect.signature(command)
    configs = {
        name: hints[name] for name in signature.parameters if dataclasses.is_dataclass(hints[name])
    }
    parameters = [
        parameter.replace(annotation=hints[name])
        for name, parameter in signature.parameters.items()
        if name not in configs
    ]
    owner: dict[str, str] = {}
    for config_name, config in configs.items():
        types = typing.get_type_hints(config)
        for field in dataclasses.fields(config):
            if field.metadata.get("option", True) is False or field.name in omit:
                continue
            if field.name in owner or field.name in signature.parameters:
                raise TypeError(f"option --{field.name} of {command.__name__} is defined twice")
            owner[field.name] = config_name
            parameters.append(
                inspect.Parameter(
                    field.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=field.default,
                    annotation=Annotated[
                        types[field.name], typer.Option(help=field.metadata.get("help"))
                    ],
                )
            )

    @functools.wraps(command)
    def wrapper(**values: Any) -> Any:
        fields: dict[str, dict[str, Any]] = {name: {} for name in configs}
        for name, config_name in owner.items():
            fields[config_name][name] = values.pop(name)
        try:
            built = {name: config(**fields[name]) for name, config in configs.items()}
        except ValueError as exc:  # a config's own check of its values
            raise typer.BadParameter(str(exc)) from None
        return command(**values, **built)

    del wrapper.__wrapped__  # typer must read the new signature, not the command's
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return typing.cast(Command, wrapper)
