"""The command line a person types: `mogulflow COMMAND ...`.

The DAG files (`dags --into DIR`), the preflight, the run report, the pool, the SQL (`sql --into DIR`),
the tables' DDL, the settings; the sandbox and the sample warehouse (with the `sandbox` extra).

May import: every room of mogulflow. Commands are found through the `mogulflow.commands` entry points, so the
sandbox and the demo plug in without mogulflow importing them.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable, Sequence

#: The entry-point group every command registers in (name = the command, value = `module:main`).
COMMANDS_GROUP = "mogulflow.commands"

#: Commands whose dependencies are an extra of the package, not its requirements.
EXTRA_OF_COMMAND = {"sandbox": "sandbox", "sample-warehouse": "sandbox"}

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
    try:
        command: Command = commands[name].load()
    except ModuleNotFoundError as error:
        extra = EXTRA_OF_COMMAND.get(name)
        hint = f': install it with pip install "mogulflow[{extra}]"' if extra else ""
        print(f"mogulflow {name}: needs {error.name}, which is not installed{hint}", file=sys.stderr)
        return 2
    return int(command(rest, prog=f"mogulflow {name}") or 0)
