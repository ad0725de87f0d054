"""Per ComfyUI release: tests ran and skipped, host tests (a real ComfyUI server) apart. Fails when a release
wrote no JUnit report (pytest was stopped: a hung test's timeout) or ran no host test."""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(cases) -> tuple[int, int]:
    skipped = sum(case.find("skipped") is not None for case in cases)
    return len(cases) - skipped, skipped


def main(reports: list[str]) -> int:
    failed = False
    for report in map(Path, reports):
        release = report.stem.removeprefix("junit-")
        if not report.exists():
            print(f"ComfyUI {release}: pytest wrote no JUnit report: see its output above")
            failed = True
            continue
        cases = list(ET.parse(report).iter("testcase"))
        host = [case for case in cases if case.get("classname", "").startswith("host.")]
        ran, skipped = counts(cases)
        host_ran, host_skipped = counts(host)
        print(f"ComfyUI {release}: {ran} tests ran, {skipped} skipped; "
              f"host tests (real ComfyUI server): {host_ran} ran, {host_skipped} skipped")
        failed |= host_ran == 0
    return 1 if failed or not reports else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
