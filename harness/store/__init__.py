"""The results store (SQLAlchemy 2.0): tables (``schema``), the one engine factory (``engine``) and its ``upgrade``
(Alembic ``migrations/``); then one module per kind of row, each a set of plain functions of an Engine in short-lived
sessions: entries and their ``versions``, the ``eval_sets`` they are scored on, ``evaluations`` (with their results and
headline summaries) and each result's per-sample ``predictions``, ``runs`` (with the queue they work through) and the
``claims`` between concurrent ones, the organiser's ``flags`` (the reveal), ``moderation`` and ``audit`` log, and the
``members`` who submit from the dashboard. Besides: entry files kept per version (``snapshots``, which also drops the
files of versions not kept), the database's size on disk and giving freed room back (``space``), refusals as sentences
(``db_errors``) and what a killed run left (``leftovers``)."""
