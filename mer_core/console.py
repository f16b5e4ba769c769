"""Console output from anywhere, a notebook kernel included: messages a person must see (`tell`) and progress bars
(`progress`).

Under `dvc repro` the prepare and training stages run as notebooks that papermill executes in an IPython kernel.
ipykernel replaces `sys.stderr` with a stream it records into the running cell's output and (ipykernel 6 and later)
redirects file descriptor 2 itself into that stream, keeping a duplicate of the original descriptor, which
`sys.stderr.fileno()` returns: the console that papermill and DVC were started from (`dvc repro`'s output).

- `tell(text)`: written to `sys.stderr` (the console; in a kernel, the cell's output, so the executed notebook keeps
  it) and, inside a kernel, to the console as well.
- `progress(...)`: a tqdm bar on the console only (`console()`): inside a kernel the original descriptor, so that an
  executed notebook never holds a bar (its bytes would depend on timing, and papermill shows nothing of a running
  cell); elsewhere `sys.stderr`.
"""

from __future__ import annotations

import io
import os
import sys
from functools import lru_cache
from typing import TextIO

from tqdm.std import tqdm


def in_kernel() -> bool:
    """Whether `sys.stderr` is an IPython kernel's recorded stream (a notebook is running this code)."""
    return type(sys.stderr).__module__.startswith("ipykernel")


def console_descriptor() -> int:
    """The console's file descriptor: inside a kernel the original stderr it kept (or `sys.__stderr__`'s when the
    kernel does not capture descriptor 2), else `sys.stderr`'s."""
    try:
        return sys.stderr.fileno()
    except (OSError, ValueError, AttributeError):
        return sys.__stderr__.fileno()


@lru_cache(maxsize=None)
def _descriptor_stream(fd: int) -> TextIO:
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), write_through=True)


def console() -> TextIO:
    """Where progress bars go: the console descriptor inside a kernel, else `sys.stderr`."""
    return _descriptor_stream(console_descriptor()) if in_kernel() else sys.stderr


def tell(text: str) -> None:
    """Write `text` (one or more lines) where a person sees it: `sys.stderr`, and inside a kernel also the console
    (see the module docstring), without a second copy in the notebook."""
    text = text if text.endswith("\n") else text + "\n"
    sys.stderr.write(text)
    sys.stderr.flush()
    if in_kernel():
        os.write(console_descriptor(), text.encode())


def progress(iterable=None, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)` on `console()`, redrawn at most every 2 s unless `mininterval` says otherwise."""
    kwargs.setdefault("mininterval", 2)
    return tqdm(iterable, file=console(), **kwargs)
