"""Write the profile of every missed target of a run to benchmarks/results/profiles/<run>/.

    .venv/bin/python benchmarks/missed_profiles.py benchmarks/results/2026-11-29-full

One text file per missed target and backend: the target, its figure and detail, the
cProfile of durastate's cell and, where the target names one, of the reference it is held
against (the run takes both; summary.md shows them too, this keeps them as files next to the
hand-written explanations in benchmarks/results/profiles/).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from durastate.bench import load_json

PROFILES = Path(__file__).parent / "results" / "profiles"


def _name(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main(run: Path) -> int:
    result = load_json(run / "results.json")
    out = PROFILES / run.name
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for target in result.targets:
        if target["passed"] is not False:
            continue
        lines = [f"{target['target']} on {target['backend']}",
                 f"value {target['value']:.4g} (limit {target['limit']:g} {target['unit']})",
                 f"detail: {target.get('detail', '')}", f"run: {run}", ""]
        profile = target.get("profile")
        lines += ["durastate's cell:", profile or "(no profile: see the detail)", ""]
        if target.get("profile_reference"):
            lines += [f"reference ({target['profile_cell'].get('reference', '')}):",
                      target["profile_reference"], ""]
        path = out / f"{_name(target['id'])}--{_name(target['backend'])}.txt"
        path.write_text("\n".join(lines))
        written.append(path)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
