"""The one exception type that reaches the user as a single `error:` line and exit code 2."""


class UserError(Exception):
    """Bad usage, config, data, model directory or checkpoint.

    The message must name the culprit (file, key, column, row) and say what to do where it can.
    The CLI prints it as `error: <message>` with no traceback and exits 2.
    """
