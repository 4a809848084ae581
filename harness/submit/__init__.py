"""Submitting from the dashboard, for members without git: the entry check's core (``checking``), the organiser's
personal codes and who owns which entry (``codes``), and one upload checked in the sandbox and, when it passes,
made the entry's new version (``upload``)."""
