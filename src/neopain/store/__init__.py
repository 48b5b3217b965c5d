"""Patient records of the bedside monitor: SQLAlchemy tables, the engine factory, and ``crud``,
the one module that commits."""
