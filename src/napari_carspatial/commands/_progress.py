"""A progress bar on stderr for long command-line steps (tqdm; off when stderr is not a terminal)."""

from __future__ import annotations

import contextlib
import sys


class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def set_description_str(self, desc: str) -> None:
        pass


@contextlib.contextmanager
def progress(total: int, desc: str, *, enabled: bool | None = None):
    """``with progress(n, "analyze") as bar: ... bar.update()``.

    ``enabled=None``: shown only when stderr is a terminal (so logs and pipes stay clean);
    ``False``: never (``--no-progress``).
    """
    if enabled is False:
        yield _Null()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with napari; without it, no bar
        yield _Null()
        return
    bar = tqdm(total=total, desc=desc, file=sys.stderr, disable=None if enabled is None else not enabled,
               leave=False, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()
