"""The one exception type whose message is shown to the user as is."""


class HarnessError(Exception):
    """A problem the user can fix; the message is one sentence saying what is wrong and how to fix it."""
