"""Errors that carry the file and the problem, so a user can act on them."""

from __future__ import annotations

import os


class SampleError(ValueError):
    """Bad input: names the file (when there is one), what is wrong and how to fix it.

    The GUI shows ``str(err)`` in a notification; scripts see a clean one-paragraph message
    ``"{path}: {problem} {hint}"``.

    Parameters
    ----------
    problem
        What is wrong, in the user's words.
    path
        The file or folder at fault.
    hint
        How to fix it.
    """

    def __init__(self, problem: str, *, path: str | os.PathLike | None = None, hint: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        self.hint = hint
        parts = []
        if self.path:
            parts.append(f"{self.path}: ")
        parts.append(problem)
        if hint:
            parts.append(f" {hint}")
        super().__init__("".join(parts))


class ReaderError(SampleError):
    """A file could not be read (missing, truncated, unsupported layout).

    Parameters
    ----------
    problem
        What is wrong, in the user's words.
    path
        The file or folder at fault.
    hint
        How to fix it.
    """
