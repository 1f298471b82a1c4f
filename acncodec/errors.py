"""The one exception type the command line turns into a one-line message."""


class AcnError(Exception):
    """A problem the user can act on (bad input, wrong model, corrupt archive).

    The command line prints ``error: <message>`` and exits non-zero; library callers
    catch it like any other exception. Messages name the file and the problem.
    """


def shown(text: str) -> str:
    """Text from a file or an archive, safe to print: control and other unprintable characters (terminal
    escapes, a forged newline, a lone surrogate) appear as escapes, in quotes."""
    if text.isprintable():
        return repr(text) if ("'" in text or '"' in text or text != text.strip()) else f"'{text}'"
    return "'" + "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text) + "'"
