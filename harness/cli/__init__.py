"""The `harness` command. Only this package prints; library code logs.

Each sub-command lives in its own module exposing `register(subparsers)`; add a command by
adding its module name to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from harness.cli._common import err_console
from harness.cli._console import configure_logging
from harness.errors import HarnessError

COMMANDS = ["run", "score", "models", "runs", "aggregate", "gate", "compare", "leaderboard", "fuse", "train", "pipeline", "merge", "score_text"]


def common_parent() -> argparse.ArgumentParser:
    """Options every sub-command accepts, after the sub-command name."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--store", default=os.environ.get("HARNESS_STORE", ".harness/store.sqlite"),
                   help="SQLite store path (default .harness/store.sqlite or $HARNESS_STORE)")
    p.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR"),
                   help="local benchmark data laid out like shared/benchmarks (or $HARNESS_DATA_DIR)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.add_argument("--unsafe-sandbox", action="store_true",
                   help="run model-written code even where no isolating sandbox (bubblewrap, unshare) works; "
                        "the code then runs with your files and network (docs/sandbox.md)")
    return p


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: exit 2 with the usage line, no traceback
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Evaluate, fuse and train LLMs (FuseChat-3.0 / WRPO).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parent = common_parent()
    for name in COMMANDS:
        importlib.import_module(f"harness.cli.{name}").register(sub, parent)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "unsafe_sandbox", False):
        os.environ["HARNESS_UNSAFE_SANDBOX"] = "1"  # read by harness.sandbox.core (UNSAFE_ENV)
    configure_logging(getattr(args, "verbose", 0))
    try:
        return int(args.func(args) or 0)
    except HarnessError as e:
        from rich.markup import escape

        # escaped: messages quote user input and model names, which may contain [brackets]
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        return e.exit_code
    except KeyboardInterrupt:
        err_console.print("\ninterrupted: finished generations are saved; run the same command again to resume.",
                          highlight=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
