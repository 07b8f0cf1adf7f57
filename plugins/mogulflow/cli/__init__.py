"""The command line a person types: `mogulflow COMMAND ...`.

May import: every room of mogulflow. Commands are found through the `mogulflow.commands` entry points, so the
sandbox and the demo plug in without mogulflow importing them.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable, Sequence

#: The entry-point group every command registers in (name = the command, value = `module:main`).
COMMANDS_GROUP = "mogulflow.commands"

#: A command's entry: its own argv (without the command's name) and the program name for `--help`.
Command = Callable[..., int | None]


def available_commands() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed commands, by name."""
    return {entry.name: entry for entry in importlib.metadata.entry_points(group=COMMANDS_GROUP)}


def _usage(commands: Sequence[str]) -> str:
    listed = "\n".join(f"  mogulflow {name}" for name in sorted(commands))
    return f"usage: mogulflow COMMAND [--help | options]\n\ncommands:\n{listed}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; `mogulflow --help` lists them, `mogulflow COMMAND --help` explains one."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = available_commands()
    if not args or args[0] in ("-h", "--help"):
        print(_usage(list(commands)))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in commands:
        print(f"mogulflow: unknown command {name!r}\n\n{_usage(list(commands))}", file=sys.stderr)
        return 2
    # Each command imports what it needs only when chosen: `mogulflow sandbox` never imports Airflow.
    command: Command = commands[name].load()
    return int(command(rest, prog=f"mogulflow {name}") or 0)
