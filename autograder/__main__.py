"""Command line of the autograder: ``python -m autograder {release,grade,gradescope} ...``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "release": ("autograder.release", "generate notebooks/ from solutions/"),
    "grade": ("autograder.grade", "grade submitted notebooks"),
    "gradescope": ("autograder.gradescope", "build a Gradescope autograder package (zip)"),
}


def usage() -> str:
    lines = ["usage: python -m autograder COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    lines.append("\n`python -m autograder COMMAND --help` describes a command's arguments.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}; choose one of {', '.join(COMMANDS)}\n\n{usage()}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
