"""The committed spec: equal to what the generator writes, and valid against the NWB schema language."""

import importlib.util
from pathlib import Path

import pynwb
import pytest

SPEC_DIR = Path(__file__).parent.parent / "spec"
YAML_FILES = ["ndx-mimic.namespace.yaml", "ndx-mimic.extensions.yaml"]


def test_committed_yaml_equals_generator_output(tmp_path):
    spec = importlib.util.spec_from_file_location("create_extension_spec", SPEC_DIR / "create_extension_spec.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.main(tmp_path)
    for name in YAML_FILES:
        assert (tmp_path / name).read_text() == (SPEC_DIR / name).read_text(), (
            f"spec/{name} is stale: run python spec/create_extension_spec.py"
        )


@pytest.mark.parametrize("name", YAML_FILES)
def test_spec_passes_schema_language_validation(name):
    from hdmf.testing.validate_spec import validate_spec

    meta_schema = Path(pynwb.__file__).parent / "nwb-schema" / "nwb.schema.json"
    validate_spec(SPEC_DIR / name, meta_schema)  # raises jsonschema.ValidationError


def test_every_type_is_documented():
    import yaml

    extensions = yaml.safe_load((SPEC_DIR / "ndx-mimic.extensions.yaml").read_text())

    def walk(spec, where):
        assert spec.get("doc"), f"{where} has no doc"
        for kind in ("groups", "datasets", "attributes", "links"):
            for child in spec.get(kind, []):
                walk(
                    child,
                    f"{where}/{child.get('name') or child.get('neurodata_type_def') or child.get('neurodata_type_inc')}",
                )

    for group in extensions["groups"]:
        walk(group, group["neurodata_type_def"])
