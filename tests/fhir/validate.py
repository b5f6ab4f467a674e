"""Validates FHIR R4 JSON (a Bundle, or any resource) with the fhir.resources
package: each file named on the command line, or standard input.

FHIR R4 proper (4.0.1) is what fhir.resources 6.2 gives with pydantic 1
(requirements.txt pins both): later releases default to R5 and offer only R4B
and STU3 beside it. The models check every element's type and cardinality,
required elements, primitive formats (id, dateTime, instant, uri, code…),
choice types, and refuse unknown elements. Each Bundle entry's resource is
parsed again with its own class, so an error inside one names it.

fhir.resources does not check terminology bindings: the codes of the
*required* bindings tuxa writes are checked here against the R4 value sets.

Exit status 0: all valid; 1: a validation error (printed); 2: bad usage.
"""

import json
import sys

import fhir.resources
from fhir.resources import construct_fhir_element
from pydantic import ValidationError


# (resourceType, path) -> the codes FHIR R4's required binding allows.
REQUIRED = {
    ("Bundle", "type"): {"document", "message", "transaction", "transaction-response", "batch",
                         "batch-response", "history", "searchset", "collection"},
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Encounter", "status"): {"planned", "arrived", "triaged", "in-progress", "onleave",
                              "finished", "cancelled", "entered-in-error", "unknown"},
    ("Consent", "status"): {"draft", "proposed", "active", "rejected", "inactive",
                            "entered-in-error"},
    ("Consent", "provision.type"): {"deny", "permit"},
    ("Composition", "status"): {"preliminary", "final", "amended", "entered-in-error"},
    ("Composition", "attester.mode"): {"personal", "professional", "legal", "official"},
    ("DocumentReference", "status"): {"current", "superseded", "entered-in-error"},
    ("AuditEvent", "action"): {"C", "R", "U", "D", "E"},
    ("AuditEvent", "outcome"): {"0", "4", "8", "12"},
    ("Identifier", "use"): {"usual", "official", "temp", "secondary", "old"},
}


def values(node, path):
    for part in path.split("."):
        if isinstance(node, list):
            node = [n.get(part) for n in node if isinstance(n, dict)]
            node = [x for n in node for x in (n if isinstance(n, list) else [n])]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return []
    if node is None:
        return []
    return node if isinstance(node, list) else [node]


def bindings(res, where):
    errors = []
    ty = res.get("resourceType")
    for (rt, path), allowed in REQUIRED.items():
        if rt == ty:
            for v in values(res, path):
                if v not in allowed:
                    errors.append(f"{where} ({ty}): {path} {v!r} is not in its required value set")
    for ident in values(res, "identifier"):
        if isinstance(ident, dict) and ident.get("use") not in (None, *REQUIRED[("Identifier", "use")]):
            errors.append(f"{where} ({ty}): identifier.use {ident.get('use')!r}")
    return errors


def validate(doc, where):
    errors = bindings(doc, where)
    try:
        construct_fhir_element(doc["resourceType"], doc)
    except (ValidationError, KeyError, LookupError, TypeError, ValueError) as e:
        errors.append(f"{where} ({doc.get('resourceType')}): {e}")
    for i, entry in enumerate(doc.get("entry") or []):
        res = entry.get("resource") or {}
        errors += bindings(res, f"{where} entry {i}")
        try:
            construct_fhir_element(res["resourceType"], res)
        except (ValidationError, KeyError, LookupError, TypeError, ValueError) as e:
            errors.append(f"{where} entry {i} ({res.get('resourceType')} {res.get('id')}): {e}")
    return errors


def main(argv):
    if fhir.resources.__fhir_version__ != "4.0.1":
        print(f"fhir.resources {fhir.resources.__version__} models FHIR "
              f"{fhir.resources.__fhir_version__}, not R4 (4.0.1)", file=sys.stderr)
        return 2
    sources = argv[1:] or ["-"]
    errors = []
    for src in sources:
        text = sys.stdin.read() if src == "-" else open(src, encoding="utf-8").read()
        errors += validate(json.loads(text), src)
    for e in errors:
        print(e)
    if errors:
        return 1
    print(f"valid FHIR {fhir.resources.__fhir_version__}: {', '.join(sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
