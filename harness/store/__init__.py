"""The results store (SQLAlchemy 2.0): tables (``schema``), the one engine factory (``engine``) and its ``upgrade``
(Alembic ``migrations/``), reads and writes of results (``results``), ``claims`` between concurrent runs, entry
files kept per version (``snapshots``), refusals as sentences (``db_errors``) and what a killed run left
(``leftovers``)."""
