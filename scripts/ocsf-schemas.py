#!/usr/bin/env python3
"""Regenerates tests/ocsf/<version>/<class>.json: self-contained JSON Schemas
(draft 2020-12) of the OCSF classes auditfwd emits, from the official OCSF
schema export bundled in the PyPI package `ocsf-json-schema`.

    python3 -m venv /tmp/ocsf && /tmp/ocsf/bin/pip install ocsf-json-schema==1.2.0
    /tmp/ocsf/bin/python scripts/ocsf-schemas.py

The tests validate every OCSF record against these files offline.
"""
import json
import pathlib

from ocsf_json_schema import OcsfJsonSchema, OcsfJsonSchemaEmbedded, get_ocsf_schema

VERSION = "1.8.0"
CLASSES = [
    "base_event",
    "account_change",
    "authentication",
    "entity_management",
    "user_access",
    "web_resources_activity",
]

out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "ocsf" / VERSION
out.mkdir(parents=True, exist_ok=True)
schema = OcsfJsonSchemaEmbedded(OcsfJsonSchema(get_ocsf_schema(version=VERSION)))
for name in CLASSES:
    (out / f"{name}.json").write_text(json.dumps(schema.get_class_schema(name), sort_keys=True) + "\n")
    print(f"wrote {out / name}.json")
