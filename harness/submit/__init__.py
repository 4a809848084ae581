"""Submitting from the dashboard, for members without git: the entry check's core (``checking``, also behind
``python -m harness.check``), and one upload checked in the sandbox and, when it passes, made the entry's new
version (``upload``). The members' codes, who owns which entry and the upload log are kept by
``harness.store.members``."""
