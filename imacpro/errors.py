"""Errors the user can act on. The CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """Bad input from the user or a damaged file on the host: a message, never a traceback."""
