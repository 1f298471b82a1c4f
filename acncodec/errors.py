"""The one exception type the command line turns into a one-line message."""


class AcnError(Exception):
    """A problem the user can act on (bad input, wrong model, corrupt archive).

    The command line prints ``error: <message>`` and exits non-zero; library callers
    catch it like any other exception. Messages name the file and the problem.
    """
