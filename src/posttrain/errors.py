"""The one exception type that reaches users as a one-line message instead of a traceback."""


class UserError(Exception):
    """Bad input from the user: a file, field, option or value that is not what was expected.

    The CLI prints ``error: <message>`` and exits with status 2. Messages name the thing that is
    wrong and what was expected, on one line.
    """
