"""Sphinx configuration: the API reference is built from the docstrings (autodoc + napoleon).

Build: ``make docs`` (warnings are errors, as in CI).
"""

import ndx_mimic

project = "ndx-mimic / mimic-nwb"
author = "ndx-mimic developers"
release = ndx_mimic.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures carry numpy/mujoco types that do not resolve as cross-references
napoleon_google_docstring = True
napoleon_numpy_docstring = True  # the NeuroConv interfaces follow NeuroConv's NumPy-style docstrings
napoleon_use_ivar = True
# StacConfig groups its attributes under these headings (read as parameter lists)
napoleon_custom_sections = [
    (name, "params_style")
    for name in ("Calibration", "Pose fitting", "Floor and unobserved joints", "Arena", "Parallelism")
]  # "Attributes:" sections as fields, not a second description of each attribute
exclude_patterns = ["_build", "report.png"]
html_theme = "alabaster"
nitpicky = False
# Same-named attributes of different classes (n_folds of two configs) make napoleon's ivar
# references ambiguous; Sphinx then warns although each page is right.
suppress_warnings = ["ref.python"]


def _write_api_pages():
    """One ``automodule`` per public module, regenerated on every build so that new modules are
    documented without editing a list (pages go to docs/api/, which is not committed)."""
    import importlib
    import pkgutil
    from pathlib import Path

    out = Path(__file__).parent / "api"
    out.mkdir(exist_ok=True)
    for package in ("ndx_mimic", "mimic_nwb"):
        root = importlib.import_module(package)
        names = [package] + sorted(
            info.name
            for info in pkgutil.walk_packages(root.__path__, package + ".")
            if not any(part.startswith("_") for part in info.name.split(".")[1:])
            and not info.name.endswith((".cli", ".data"))
        )
        lines = [f"``{package}``", "=" * (len(package) + 4), ""]
        for name in names:
            lines += [name, "-" * len(name), "", f".. automodule:: {name}"]
            if hasattr(importlib.import_module(name), "__path__"):
                # a package re-exports its modules' names: documented once, in their modules
                lines += ["   :no-members:"]
            lines += [""]
        (out / f"{package}.rst").write_text("\n".join(lines))


_write_api_pages()
