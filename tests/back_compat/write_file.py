"""Write the back-compatibility file of this ndx-mimic version: ``python tests/back_compat/write_file.py``.

Run it once per release; commit the file; tests/test_back_compat.py reads every file here.
"""

from pathlib import Path

from pynwb import NWBHDF5IO

import ndx_mimic
from ndx_mimic.testing.mock import mock_session

if __name__ == "__main__":
    path = Path(__file__).parent / f"ndx-mimic_{ndx_mimic.__version__}.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(mock_session(session_id=f"back-compat-{ndx_mimic.__version__}"))
    print(f"wrote {path} ({path.stat().st_size} bytes)")
