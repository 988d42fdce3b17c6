"""Show library versions, which backends are usable on this machine, and why the others are not.

Fast by default: torch, onnx, onnxscript and onnxslim are found on disk and their versions read from the
package metadata (importing them takes seconds); --deep imports them too.

Example:
  edgeseg info
  edgeseg info --json > env.json
  edgeseg info --deep                 # also check that torch and onnx really import
"""

from __future__ import annotations

import json

HELP = "show versions, usable backends and GPU"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    parser.add_argument("--deep", action="store_true",
                        help="import every library (torch, onnx, ...) to check it loads; slower (seconds)")


def run(args) -> int:
    from ..info import collect

    report = collect(deep=args.deep)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"edgeseg on Python {report['python']}, {report['platform']} ({report['cpu_count']} CPUs)")
    print("\nlibraries:")
    for name, probe in report["libraries"].items():
        print(f"  {'ok ' if probe['ok'] else ' - '} {name:<13} {probe['detail']}")
    if report["not_imported"]:
        print(f"  ({', '.join(report['not_imported'])}: version from package metadata, not imported; --deep imports)")
    print(f"\ngpu: {report['cuda']['detail']}")
    print("\nbackends:")
    for name, probe in report["backends"].items():
        state = "usable" if probe["ok"] else "not usable"
        print(f"  {name:<25} {state:<11} {probe['detail']}")
    return 0
