"""The bundled sample data and starter project file (installed as ``engine.bundled``)."""
