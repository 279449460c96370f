"""What the commands share: the --params option's help, and one line for an unexpected exception."""

from __future__ import annotations

#: The --params option of every command that reads params.
PARAMS_HELP = "The params file to read (relative to the working directory)."


def describe_exception(e: BaseException) -> str:
    """One line for an unexpected exception; a file it names is given relative to the working directory."""
    import os

    if isinstance(e, OSError) and e.filename:
        name = str(e.filename)
        if os.path.isabs(name):
            rel = os.path.relpath(name)
            name = rel if not rel.startswith("..") else name
        what = (e.strerror or str(e)).rstrip(".")
        return f"{what[:1].lower() + what[1:]}: {name} ({type(e).__name__})"
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no message'}"
