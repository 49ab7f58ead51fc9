"""What `wb ... --help` shows beyond typer's own rendering.

- Training defaults: the training commands' options default to None ("not given") so that a
  run.toml can fill them; their real defaults live in ``trainers/config.py``.
  :func:`polish_help` appends those to each option's help (``[default: 3e-05]``), so the help never
  disagrees with what a run uses.
- Flags (``--detach``, ``--json``, ``-h``) show no ``<bool>`` value: they take none.

Applied only when help is asked for; the commands themselves never read what it sets.
"""

from __future__ import annotations

from dataclasses import MISSING, fields


def polish_help(root, train: bool = True) -> None:
    """Rewrite the help of ``root`` (the click Group ``typer.main.get_command`` builds) in place;
    the training defaults (which import ``trainers.config``) only when ``train``."""
    for command in _walk(root):
        for param in command.params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        command.get_help_option = _flag_without_type(command.get_help_option)  # -h/--help too
    commands = getattr(root, "commands", {}).get("train") if train else None
    if commands is not None:
        _train_defaults(commands)


def _train_defaults(train) -> None:
    """Append ``[default: X]`` to every option of the ``train`` subcommands that has a config default.
    Options whose default depends on the workspace (``--base``) or that have none are left alone."""
    from rich.markup import escape

    from trainers.config import FLAG_OF_FIELD, RunConfig

    field_of = {flag.removeprefix("--"): key for key, flag in FLAG_OF_FIELD.items()}  # option parameter -> field
    configs = {cls.TRAINER: cls for cls in _subclasses(RunConfig) if "TRAINER" in cls.__dict__}
    for kind, command in train.commands.items():
        cls = configs.get(kind)
        if cls is None:
            continue
        defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        for param in command.params:
            key = field_of.get(param.name, param.name)
            if key not in defaults or param.name in ("data", "base"):
                continue
            shown = _shown(param, defaults[key])
            if shown is not None:
                param.help = f"{param.help or ''} {escape(f'[default: {shown}]')}".strip()


def _shown(param, value) -> str | None:
    if isinstance(value, bool):
        flag = param.opts[0] if value else (param.secondary_opts or param.opts)[0]
        return flag.lstrip("-")
    if value is None or value == "":
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


def _flag_without_type(get_help_option):
    def wrapped(ctx):
        option = get_help_option(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    return wrapped


def _walk(command):
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _walk(sub)


def _subclasses(cls) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found
