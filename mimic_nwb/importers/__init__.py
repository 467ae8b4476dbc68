"""Importers: bring keypoints, units, behaviour labels and other tools' outputs into a session.

One module per source: :mod:`.keypoints` (DANNCE, NWB/ndx-pose; with :mod:`.sleap` and
:mod:`.anipose`, on the types and checks of :mod:`.keypoint_data`), :mod:`.units`,
:mod:`.labels`, and one per other tool's output: :mod:`.stac_mjx`, :mod:`.track_mjx`,
:mod:`.mimic_h5` (sharing :mod:`.hdf5` for reading HDF5 and :mod:`.registration` for
registrations made elsewhere). Each ``import_*`` function takes a session (or its path), the
source file and a typed config, and returns a typed result.
"""
