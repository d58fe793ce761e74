"""Runs SQL in ClickHouse 26 in-process (PyPI chdb-core), for the modern-server check.

Input (a JSON file named on the command line):
  {"statements": ["CREATE ...", "INSERT ..."], "queries": {"name": "SELECT ..."}}
Output (stdout, one JSON object):
  {"version": "...", "failed": null | {"sql": ..., "error": ...}, "results": {"name": [rows...]}}
Statements run in order and stop at the first failure; queries run only if all succeeded.
"""

import json
import sys
import tempfile

from chdb import session


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        work = json.load(handle)
    with tempfile.TemporaryDirectory() as path:
        db = session.Session(path)
        out = {"version": str(db.query("SELECT version()", "CSV")).strip().strip('"'), "failed": None, "results": {}}
        for sql in work["statements"]:
            try:
                db.query(sql)
            except Exception as error:  # chdb raises its own error type per failure
                out["failed"] = {"sql": sql, "error": str(error)}
                break
        if out["failed"] is None:
            for name, sql in work["queries"].items():
                try:
                    text = str(db.query(sql, "JSONEachRow"))
                except Exception as error:
                    out["failed"] = {"sql": sql, "error": str(error)}
                    break
                out["results"][name] = [json.loads(line) for line in text.splitlines() if line.strip()]
        db.close()
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
