"""Testing helpers for ndx-mimic: mock constructors in :mod:`ndx_mimic.testing.mock`."""
