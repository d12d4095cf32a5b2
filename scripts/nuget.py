"""Zips a NuGet package folder PKG (its .nuspec, lib/, runtimes/) into NUPKG, adding the OPC
parts a NuGet client expects ([Content_Types].xml, _rels/.rels). Usage: nuget.py PKG NUPKG"""
import os
import sys
import zipfile

pkg, nupkg = sys.argv[1:3]
nuspec = next(f for f in os.listdir(pkg) if f.endswith(".nuspec"))
exts = set()
files = []
for root, dirs, names in sorted(os.walk(pkg)):
    dirs.sort()
    for n in sorted(names):
        full = os.path.join(root, n)
        arc = os.path.relpath(full, pkg)
        files.append((arc, full))
        ext = n.rsplit(".", 1)[1] if "." in n else ""
        exts.add(ext)
types = "".join(
    f'<Default Extension="{e}" ContentType="application/octet" />' for e in sorted(exts) if e
)
content_types = (
    '<?xml version="1.0" encoding="utf-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.'
    'openxmlformats-package.relationships+xml" />' + types + "</Types>"
)
rels = (
    '<?xml version="1.0" encoding="utf-8"?><Relationships xmlns="http://schemas.openxmlformats.'
    'org/package/2006/relationships"><Relationship Type="http://schemas.microsoft.com/packaging/'
    f'2010/07/manifest" Target="/{nuspec}" Id="R0" /></Relationships>'
)
with zipfile.ZipFile(nupkg + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("[Content_Types].xml", content_types)
    z.writestr("_rels/.rels", rels)
    for arc, full in files:
        info = zipfile.ZipInfo(arc, date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = (0o100755 if os.access(full, os.X_OK) else 0o100644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, open(full, "rb").read())
os.replace(nupkg + ".tmp", nupkg)
