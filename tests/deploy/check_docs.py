#!/usr/bin/env python3
"""Every test the docs name as the proof of a statement exists.

Finds `unit.…`, `integration.…`, `fault.…` and `compat.…` CTest names in backquotes in the docs (a trailing `.*`
means "a test of that name prefix") and fails naming each one `ctest -N` does not list.
"""
import argparse
import pathlib
import re
import subprocess
import sys

NAME = re.compile(r"`((?:unit|integration|fault|compat)\.[A-Za-z0-9_.]+?)(\.\*)?`")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    listed = subprocess.run(["ctest", "--test-dir", args.build_dir, "-N"], capture_output=True, text=True, check=True)
    tests = set(re.findall(r"Test\s+#\d+: (\S+)", listed.stdout))
    root = pathlib.Path(args.source_dir)
    docs = sorted(root.glob("docs/*.md")) + [root / "README.md", root / "consumer_sdk/README.md",
                                              root / "dedupe/README.md"]
    docs += sorted(root.glob("examples/*/README.md"))
    problems = []
    named = 0
    for doc in docs:
        if not doc.exists():
            continue
        for lineno, line in enumerate(doc.read_text().splitlines(), 1):
            for m in NAME.finditer(line):
                name, wildcard = m.group(1), m.group(2)
                named += 1
                ok = any(t.startswith(name + ".") for t in tests) if wildcard else name in tests
                if not ok:
                    problems.append(f"{doc.relative_to(root)}:{lineno}: names test `{m.group(0)[1:-1]}`, "
                                    "which ctest does not list")
    for p in problems:
        print(p)
    print(f"{named} test names in the docs, {len(problems)} unknown")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
