"""Validates custom resources against their CustomResourceDefinition's OpenAPI v3 schema, strictly.

Usage: validate_crd.py CRD.yaml MANIFEST.yaml

kubernetes-validate knows only Kubernetes' built-in kinds and passes any other kind with a warning, so the
autoscaling tests check KEDA's ScaledObject here instead, against the schema of KEDA's own CRD, the way the API
server would with `kubectl apply --validate=strict`: every object of the manifest whose apiVersion and kind the
CRD defines is validated against `spec.versions[name].schema.openAPIV3Schema`, with fields the schema does not
declare rejected (the API server prunes or, strictly, refuses them) and int32 fields held to their range.
Prints one PASSED line per object, or each error; exits 1 on any error, and also when the manifest holds no
object of the CRD's kind: a check that found nothing to check has not passed.
"""
import copy
import sys

import jsonschema
import yaml

INT32 = (-(2**31), 2**31 - 1)


def strict(schema):
    """The schema with `additionalProperties: false` wherever it lists properties and says nothing else."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            if node.get("format") == "int32":
                node.setdefault("minimum", INT32[0])
                node.setdefault("maximum", INT32[1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def main(crd_path, manifest_path):
    with open(crd_path) as f:
        crd = next(doc for doc in yaml.safe_load_all(f) if doc)
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    schemas = {
        f"{group}/{v['name']}": strict(v["schema"]["openAPIV3Schema"]) for v in crd["spec"]["versions"]
    }
    with open(manifest_path) as f:
        docs = [doc for doc in yaml.safe_load_all(f) if doc is not None]
    checked = 0
    failed = False
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != kind:
            continue
        name = (doc.get("metadata") or {}).get("name")
        api_version = doc.get("apiVersion")
        if api_version not in schemas:
            print(f"ERROR {manifest_path} {kind}/{name}: apiVersion {api_version!r} is not one of {sorted(schemas)}")
            failed = True
            continue
        checked += 1
        errors = sorted(
            jsonschema.Draft4Validator(schemas[api_version]).iter_errors(doc), key=lambda e: list(e.absolute_path)
        )
        for error in errors:
            path = ".".join(str(p) for p in error.absolute_path) or "(root)"
            print(f"ERROR {manifest_path} {kind.lower()}/{name}: {path}: {error.message}")
        if errors:
            failed = True
        else:
            print(f"PASSED {manifest_path} {kind.lower()}/{name} against {api_version} ({crd_path})")
    if checked == 0 and not failed:
        print(f"ERROR {manifest_path}: no {kind} object to validate")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
