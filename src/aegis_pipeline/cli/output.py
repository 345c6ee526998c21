"""What every `aegis-pipeline` command shares at its edges: exit codes, the one-line error an operator can act on,
and the `--json` document a script reads.

An error of the pipeline (`common.errors.PipelineError`) reaching the top of a command is printed as one line (its
DP code and what failed) and one hint (which engine, which setting, which command), not as a traceback; `--debug`
or LOG_LEVEL=DEBUG shows the traceback. Exit codes (README, "Exit codes"):

    0  the work was done
    1  the work ran and failed, or found a problem (a source or target failed, drift, an unexpected error)
    2  bad usage or configuration (an option, a setting, the sources file, a deletion not confirmed): nothing done
    3  an engine could not be reached or timed out: run the command again once it is back
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import date, datetime
from enum import IntEnum
from typing import Any, NoReturn

import click

from aegis_pipeline.common.errors import ErrorCode, PipelineError, SourceConfigError, StoreUnavailableError
from aegis_pipeline.settings import SettingsError


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    ENGINE_UNAVAILABLE = 3


# The engine an error names (its `store` detail, else the first word of its message) -> what to call it and the
# settings that point at it.
_ENGINES: dict[str, tuple[str, str, str]] = {
    # name in errors: (engine, its name in `dev status`, settings)
    "postgres": ("PostgreSQL", "postgres", "POSTGRES_HOST, POSTGRES_PORT"),
    "kafka": ("Kafka", "kafka", "KAFKA_BOOTSTRAP_SERVERS"),
    "redis": ("Redis", "redis", "REDIS_URL"),
    "milvus": ("Milvus", "milvus", "MILVUS_URI"),
    "graph": ("the graph store", "graph", "GRAPH_URI"),
    "elasticsearch": ("Elasticsearch", "search", "ELASTICSEARCH_URL"),
}
# The DP codes of errors that name no engine -> where to look first.
_CODE_HINTS = {
    ErrorCode.DATA_SOURCE_UNAVAILABLE: "the source's definition (SOURCES_FILE, docs/sources.md) and whether it answers",
    ErrorCode.API_RATE_LIMIT_EXCEEDED: "the source's daily quota; the next run goes on",
    ErrorCode.MILVUS_SYNC_FAILED: "Milvus (MILVUS_URI) and `aegis-pipeline consistency check --target vectors`",
    ErrorCode.NEO4J_SYNC_FAILED: "the graph store (GRAPH_URI) and `aegis-pipeline consistency check --target graph`",
    ErrorCode.ELASTICSEARCH_SYNC_FAILED: "Elasticsearch (ELASTICSEARCH_URL) and `aegis-pipeline consistency check "
                                         "--target search`",
    ErrorCode.COLD_PATH_FAILED: "`aegis-pipeline dlq list` (what the cold path dead-lettered) and the run's log lines",
}
_DEBUG_HINT = "--debug shows the traceback"


def json_option(function: Any) -> Any:
    """`--json`: print one JSON document, on the last line, instead of the text (the same figures, the same keys).
    Marks the run, so that an error is printed as a JSON document too (`fail`)."""

    def mark(context: click.Context, _: click.Parameter, value: bool) -> bool:
        if value:
            context.meta["aegis.json"] = True
        return value

    return click.option("--json", "as_json", is_flag=True, callback=mark, expose_value=True,
                        help="Print one JSON document (the figures of the text output) as the last line.")(function)


def print_json(document: Any) -> None:
    """One JSON document on one line; dataclasses, dates and sets as their natural JSON form."""
    click.echo(json.dumps(document, ensure_ascii=False, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


def confirm_deletion(what: str, *, yes: bool) -> None:
    """Go on only when deleting `what` is confirmed: `--yes`, or `y` typed at a terminal. Otherwise exit 2 having
    deleted nothing (a script must say --yes: a deletion never happens because nobody was asked)."""
    if yes:
        return
    if sys.stdin.isatty():
        if click.confirm(f"Delete {what}?", default=False, err=True):
            return
        fail_usage("nothing deleted")
    fail_usage(f"this deletes {what}: run it again with --yes to delete, or with --dry-run to count first")


def fail_usage(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(ExitCode.USAGE)


class PipelineCommandGroup(click.Group):
    """The root group: an error that reaches the top of any command ends it with one short line and its exit
    code (module docstring), unless `--debug` or LOG_LEVEL=DEBUG asked for the traceback."""

    def invoke(self, context: click.Context) -> Any:
        try:
            return super().invoke(context)
        except SettingsError as error:  # its message already names each setting (settings.SettingsError)
            click.echo(str(error.code), err=True)
            sys.exit(ExitCode.USAGE)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as error:  # the top of the command: every error ends here, said shortly
            if context.meta.get("aegis.debug"):
                raise
            _report(error, as_json=bool(context.meta.get("aegis.json")))


def _report(error: BaseException, *, as_json: bool) -> NoReturn:
    """Print `error` as an operator reads it (and as a JSON document for `--json`), and exit with its code."""
    error = _first_pipeline_error(error)
    if isinstance(error, PipelineError):
        code: str | None = error.code.value
        message = error.message
        hint = _hint(error)
        exit_code = (ExitCode.ENGINE_UNAVAILABLE if isinstance(error, StoreUnavailableError)
                     else ExitCode.USAGE if isinstance(error, SourceConfigError) else ExitCode.FAILED)
    else:  # not one of ours: a bug, or a failure no store translated yet
        code, message = None, f"unexpected {type(error).__name__}: {error}"
        hint = f"this is a bug or a failure the pipeline does not know yet; {_DEBUG_HINT}"
        exit_code = ExitCode.FAILED
    click.echo(f"error {code}: {message}" if code else f"error: {message}", err=True)
    click.echo(f"  hint: {hint}", err=True)
    if as_json:
        print_json({"error": {"code": code, "message": message, "hint": hint, "exit_code": int(exit_code)}})
    sys.exit(exit_code)


def _first_pipeline_error(error: BaseException) -> BaseException:
    """Of an exception group (a task group's failures), the first error of ours, else the first; else `error`."""
    if isinstance(error, BaseExceptionGroup):
        leaves = [_first_pipeline_error(inner) for inner in error.exceptions]
        return next((leaf for leaf in leaves if isinstance(leaf, PipelineError)), leaves[0])
    return error


def _hint(error: PipelineError) -> str:
    engine_key = str(error.details.get("store") or error.message.split(" ", 1)[0].rstrip(":"))
    if engine_key in _ENGINES and isinstance(error, StoreUnavailableError):
        engine, status_name, settings = _ENGINES[engine_key]
        return (f"is {engine} running{_at(status_name)}? `aegis-pipeline dev status` shows the engines (`dev up` "
                f"starts the embedded ones), or set {settings}; run again once it answers ({_DEBUG_HINT})")
    where = _CODE_HINTS.get(error.code)
    return f"check {where} ({_DEBUG_HINT})" if where else _DEBUG_HINT


def _at(engine: str) -> str:
    """` at <url>` of `engine` by the settings in force, or nothing when they cannot be read (no password shown)."""
    from aegis_pipeline.settings import load_settings

    try:
        url = load_settings().engine_url(engine)
    except (SettingsError, ValueError, KeyError):
        return ""
    return f" at {url}" if url else ""
