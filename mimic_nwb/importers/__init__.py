"""Importers: bring keypoints, units, behaviour labels and other tools' outputs into a session."""
