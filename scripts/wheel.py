"""Writes a wheel (PEP 427) of the folder STAGE (the package minerva/ with its native library):
name and version from PYPROJECT, the long description from README, the platform TAG.
Usage: wheel.py STAGE PYPROJECT README TAG OUT_DIR   (prints the wheel's path)"""
import base64
import hashlib
import os
import re
import sys
import zipfile

stage, pyproject, readme, tag, out = sys.argv[1:6]
text = open(pyproject).read()
name = re.search(r'^name = "(.*)"', text, re.M).group(1)
version = re.search(r'^version = "(.*)"', text, re.M).group(1)
summary = re.search(r'^description = "(.*)"', text, re.M).group(1)
requires = re.search(r'^requires-python = "(.*)"', text, re.M).group(1)
dist_info = f"{name}-{version}.dist-info"
wheel_name = f"{name}-{version}-py3-none-{tag}.whl"
metadata = (
    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n"
    f"Requires-Python: {requires}\nLicense: MIT OR Apache-2.0\n"
    "Description-Content-Type: text/markdown\n\n" + open(readme).read()
)
wheel = f"Wheel-Version: 1.0\nGenerator: minerva scripts/wheel.py\nRoot-Is-Purelib: false\nTag: py3-none-{tag}\n"


def digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


records = []
path = os.path.join(out, wheel_name)
with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
    def add(arc, data, mode=0o644):
        info = zipfile.ZipInfo(arc, date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, data)
        records.append(f"{arc},{digest(data)},{len(data)}")

    for root, dirs, files in sorted(os.walk(os.path.join(stage, "minerva"))):
        dirs.sort()
        for f in sorted(files):
            full = os.path.join(root, f)
            arc = os.path.relpath(full, stage)
            mode = 0o755 if os.access(full, os.X_OK) else 0o644
            add(arc, open(full, "rb").read(), mode)
    add(f"{dist_info}/METADATA", metadata.encode())
    add(f"{dist_info}/WHEEL", wheel.encode())
    record = "\n".join(records + [f"{dist_info}/RECORD,,"]) + "\n"
    z.writestr(f"{dist_info}/RECORD", record)
os.replace(path + ".tmp", path)
print(path)
