"""Features: the catalogue of what is computed per entity and month, the Feast store that serves it, and the point-in-time dataset built from it."""
