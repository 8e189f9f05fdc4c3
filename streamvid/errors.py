"""Errors that reach the user as one line and a documented exit code (see README, "Exit codes")."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1  # unexpected failure (a bug): one line, --debug shows the traceback
EXIT_BAD_INPUT = 2  # bad input: missing/empty/non-video file, bad option, unreadable memory file
EXIT_PARTIAL = 3  # a result, but not a whole one: see its warnings (corrupt or truncated input, outputs not written)
EXIT_INTERRUPTED = 130  # Ctrl-C


def one_line(exc: BaseException | str, limit: int | None = None) -> str:
    """An error's message on one line (whitespace runs joined; its type's name when it has none),
    cut to ``limit`` characters with "..." when given."""
    text = " ".join((str(exc).strip() or type(exc).__name__).split())
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


class StreamvidError(Exception):
    """Base class: the message is shown to the user as is, on one line."""

    exit_code = EXIT_ERROR


class InputError(StreamvidError):
    """The user gave something streamvid cannot use (a file, an option, a question)."""

    exit_code = EXIT_BAD_INPUT


class Warnings(list):
    """The warnings of one command: ``append`` records one that makes the result partial (exit 3:
    corrupt or truncated input, an output not written, alerts not delivered); ``note`` one that
    does not (e.g. "nothing new to watch")."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.partial = bool(self)

    def append(self, message: str) -> None:
        self.partial = True
        super().append(message)

    def note(self, message: str) -> None:
        super().append(message)

    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.partial else EXIT_OK
