"""The results store (SQLAlchemy 2.0): tables (``schema``), the one engine factory (``engine``) and its ``upgrade``
(Alembic ``migrations/``), reads and writes of results (``results``), ``claims`` between concurrent runs, entry
files kept per version (``snapshots``, which also drops the files of versions not kept), the database's size on disk
and giving freed room back (``space``), refusals as sentences (``db_errors``) and what a killed run left
(``leftovers``)."""
