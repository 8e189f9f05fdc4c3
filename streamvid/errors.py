"""Errors that reach the user as one line and a documented exit code (see README, "Exit codes")."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1  # unexpected failure (a bug): one line, --debug shows the traceback
EXIT_BAD_INPUT = 2  # bad input: missing/empty/non-video file, bad option, unreadable memory file
EXIT_INTERRUPTED = 130  # Ctrl-C


class StreamvidError(Exception):
    """Base class: the message is shown to the user as is, on one line."""

    exit_code = EXIT_ERROR


class InputError(StreamvidError):
    """The user gave something streamvid cannot use (a file, an option, a question)."""

    exit_code = EXIT_BAD_INPUT
