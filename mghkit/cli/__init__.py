"""The command line: a thin Typer adapter over the front door (``import mghkit``).

Each command parses its options, calls one public library function and renders what it returns
(mteb's cli pattern). Heavy libraries are imported inside the commands, so ``--help`` is fast.
Process-wide set-up (logging, warnings, environment) happens here only (:mod:`mghkit.cli.setup`).
A library error (``MghkitError``) becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
from typing import Annotated, NoReturn

import typer

try:  # typer >= 0.29 vendors click as typer._click (Abort and Exit live in typer.exceptions)
    from typer._click import exceptions as click_exc
    from typer.exceptions import Abort as ClickAbort
    from typer.exceptions import Exit as ClickExit
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]
    from click.exceptions import Abort as ClickAbort  # type: ignore[assignment]
    from click.exceptions import Exit as ClickExit  # type: ignore[assignment]

from mghkit import __version__
from mghkit.cli.app import app
from mghkit.cli.setup import Terminated, setup_common
from mghkit.errors import MghkitError

# Errors of the file system, not of mghkit: reported as one line (exit 1), never a traceback.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}

# Each module registers its commands on ``app``; --help lists them in this order (the data flow).
COMMAND_MODULES = ("synth", "mine", "data", "train", "pool_inspect", "evaluate", "export", "ablate")
for _name in COMMAND_MODULES:
    importlib.import_module(f"mghkit.cli.{_name}")


def _version(value: bool) -> None:
    if value:
        print(f"mghkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More log lines on stderr.")] = False,
) -> None:
    """Multi-granularity hard-negative synthesis and anchor-token-aware pooling for LLM text embedders
    (Pan et al., ACL 2025). Commands read and write JSONL; '-' is stdin/stdout."""
    setup_common(verbose)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one error line on stderr and exit."""
    print(f"mghkit: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _usage_message(e: click_exc.UsageError) -> str:
    """'generate: Missing argument ...' for a command, the bare message for the root."""
    ctx = e.ctx
    where = ""
    if ctx is not None and ctx.parent is not None:  # a subcommand: name it (the root is "mghkit" already)
        where = f"{ctx.info_name}: "
    return where + e.format_message().replace("\n", " ")


def _silence_stdio() -> None:
    """Point stdout and stderr at /dev/null: what is still buffered for the closed pipe then
    flushes quietly at exit (else Python reports the broken pipe again and exits 120)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # replaced or closed streams
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def main() -> None:
    # The command runs in a context of our own, not through ``app()``: Typer's main() would turn a
    # broken pipe into a silent exit 1 and SIGTERM's Terminated into a silent exit 130 before
    # the handlers below could see them.
    if os.environ.get("_MGHKIT_COMPLETE"):  # the shell asks for completions: Typer's own path answers
        app(prog_name="mghkit")
        return
    command = typer.main.get_command(app)
    try:
        with command.make_context("mghkit", sys.argv[1:]) as ctx:
            command.invoke(ctx)
    except MghkitError as e:
        fail(str(e), e.exit_code)
    except click_exc.NoArgsIsHelpError as e:
        print(e.ctx.get_help() if e.ctx else "", file=sys.stderr)
        raise SystemExit(0) from None
    except click_exc.UsageError as e:  # bad option, unknown option value, missing argument, unknown command
        fail(_usage_message(e), 2)
    except ClickAbort:
        fail("aborted", 130)
    except ClickExit as e:
        raise SystemExit(e.exit_code) from None
    except Terminated:
        fail("terminated", 143)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:  # e.g. `mghkit ... | head`: the reader has what it wanted
        _silence_stdio()
        raise SystemExit(0) from None
    except OSError as e:  # a full disk, a read-only folder, no permission: one line naming the path
        if e.errno not in DISK_ERRORS:
            raise
        fail(f"{e.filename or 'output'}: {e.strerror or e}", 1)
