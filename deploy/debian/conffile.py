#!/usr/bin/env python3
"""Writes the Debian package's /etc/tessera/tessera.toml.

It is config/default.toml, every key and its documentation, with the values
that point into the source tree (the bundled samples, the npm copy of
Mirador) or into a user's home (the disk tier) replaced by the places of an
installed server. Each replacement must hit exactly one line, so a renamed
key in config/default.toml fails the package build instead of shipping a
stale path.

Usage: deploy/debian/conffile.py config/default.toml OUT
"""

import re
import sys

# (section, key) -> (value, why): the only differences from the defaults.
INSTALLED = {
    ("source", "root"): ('"/srv/iiif"', "the images (read-only for the service)"),
    ("source.http", "cache_dir"): ('"/var/cache/tessera/sources"', "the unit's CacheDirectory"),
    ("cache", "disk_dir"): ('"/var/cache/tessera/tiles"', "the unit's CacheDirectory"),
    ("presentation", "catalogue_root"): ('"/srv/iiif/items"', "inside source.root"),
    ("viewer", "static_dir"): ('"/usr/share/tessera/mirador"', "Mirador, shipped in the package"),
    ("samples", "generate"): ("false", "no sample images in /srv"),
}

HEADER = """\
# /etc/tessera/tessera.toml, installed by the tessera Debian package.
#
# A conffile: your changes are kept across upgrades (dpkg asks when the
# packaged version changes too). It is config/default.toml with the paths of
# an installed server; the lines marked "# packaged" differ from the defaults.
# Check a change before restarting: tessera check-config /etc/tessera/tessera.toml
#
"""


def main(src: str, out: str) -> None:
    section = ""
    hits = {k: 0 for k in INSTALLED}
    lines = []
    with open(src, encoding="utf-8") as f:
        for line in f:
            header = re.match(r"^\[([A-Za-z0-9_.]+)\]\s*$", line)
            if header:
                section = header.group(1)
            key = re.match(r"^([A-Za-z0-9_]+)\s*=", line)
            if key and (section, key.group(1)) in INSTALLED:
                value, why = INSTALLED[(section, key.group(1))]
                hits[(section, key.group(1))] += 1
                line = f"{key.group(1)} = {value}  # packaged: {why}\n"
            lines.append(line)
    wrong = [f"[{s}] {k}: {n} lines" for (s, k), n in hits.items() if n != 1]
    if wrong:
        sys.exit("conffile.py: expected each key once in " + src + ": " + ", ".join(wrong))
    with open(out, "w", encoding="utf-8") as f:
        f.write(HEADER)
        f.writelines(lines)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
