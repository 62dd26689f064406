"""Command line: ``entmap verify-archive FOLDER`` (and ``python -m entmap``)."""

from __future__ import annotations

import argparse
import sys

from entmap.archive import verify_archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="entmap", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify-archive", help="recompute the checksums of an unpacked run archive")
    verify.add_argument("folder", help="the unpacked archive's top folder (holds MANIFEST.sha256)")
    args = parser.parse_args(argv)
    problems = verify_archive(args.folder)
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    if problems:
        print(f"{args.folder}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.folder}: every checksum matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
