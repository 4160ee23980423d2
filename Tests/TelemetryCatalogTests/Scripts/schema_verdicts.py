"""Independent verdicts on a corpus of events from the exported JSON Schemas.

Usage: schema_verdicts.py SCHEMAS.json CORPUS.ndjson
Prints one line per corpus line: "1" when the event is valid against the schema of its
event_type (draft 2020-12, with format assertions), "0 <first error>" otherwise.
"""
import json
import sys

from jsonschema import Draft202012Validator

schemas = json.load(open(sys.argv[1]))
validators = {
    event_type: Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for event_type, schema in schemas.items()
}
for schema in schemas.values():
    Draft202012Validator.check_schema(schema)

# The date-time format needs rfc3339-validator; without it jsonschema silently skips the check.
assert "date-time" in Draft202012Validator.FORMAT_CHECKER.checkers, "rfc3339-validator is not installed"

out = []
for line in open(sys.argv[2], encoding="utf-8"):
    event = json.loads(line)
    event_type = event.get("event_type")
    validator = validators.get(event_type) if isinstance(event_type, str) else None
    if validator is None:
        out.append("0 unknown event_type")
        continue
    error = next(iter(validator.iter_errors(event)), None)
    out.append("1" if error is None else "0 " + error.message.replace("\n", " ")[:200])
print("\n".join(out))
