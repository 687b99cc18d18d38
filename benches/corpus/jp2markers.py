#!/usr/bin/env python3
"""Summarise the codestream structure of a JP2/J2K file (stdlib only).

Walks the JP2 boxes to the contiguous codestream, parses SIZ/COD from the
main header, lists the main-header markers (TLM, COM, ...), then walks every
tile-part (SOT -> SOD -> data) counting PLT segments in tile-part headers and
SOP/EPH markers in packet data. This is what `opj_dump` does not show
directly: whether PLT/TLM/SOP/EPH actually made it into the file.

Usage: jp2markers.py FILE.jp2 [FILE2.jp2 ...]
"""
import re
import struct
import sys

MARKER_NAMES = {
    0xFF4F: "SOC", 0xFF51: "SIZ", 0xFF52: "COD", 0xFF53: "COC",
    0xFF55: "TLM", 0xFF57: "PLM", 0xFF58: "PLT", 0xFF5C: "QCD",
    0xFF5D: "QCC", 0xFF5E: "RGN", 0xFF5F: "POC", 0xFF60: "PPM",
    0xFF61: "PPT", 0xFF63: "CRG", 0xFF64: "COM", 0xFF90: "SOT",
    0xFF91: "SOP", 0xFF92: "EPH", 0xFF93: "SOD", 0xFFD9: "EOC",
    0xFF50: "CAP", 0xFF59: "CPF",
}
PROGRESSIONS = ["LRCP", "RLCP", "RPCL", "PCRL", "CPRL"]


def find_codestream(data):
    if data[:2] == b"\xff\x4f":
        return 0, len(data)
    pos = 0
    while pos + 8 <= len(data):
        lbox, tbox = struct.unpack(">I4s", data[pos:pos + 8])
        hdr = 8
        if lbox == 1:
            lbox = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            hdr = 16
        elif lbox == 0:
            lbox = len(data) - pos
        if tbox == b"jp2c":
            return pos + hdr, pos + lbox
        pos += lbox
    raise ValueError("no jp2c box")


def parse_cod(seg):
    scod, prog, layers, mct, levels, xcb, ycb, cbstyle, xform = struct.unpack(
        ">BBHBBBBBB", seg[:10])
    precincts = []
    if scod & 1:
        for b in seg[10:10 + levels + 1]:
            precincts.append((1 << (b & 0xF), 1 << (b >> 4)))
    return {
        "precincts_defined": bool(scod & 1),
        "sop": bool(scod & 2),
        "eph": bool(scod & 4),
        "progression": PROGRESSIONS[prog] if prog < 5 else prog,
        "layers": layers,
        "mct": mct,
        "decomp_levels": levels,
        "resolutions": levels + 1,
        "codeblock": (1 << (xcb + 2), 1 << (ycb + 2)),
        "cblk_style": cbstyle,
        "transform": "9/7 irreversible" if xform == 0 else "5/3 reversible",
        # stored lowest resolution first; print highest first like opj -c
        "precincts_high_to_low": list(reversed(precincts)),
    }


def summarise(path):
    with open(path, "rb") as f:
        data = f.read()
    start, end = find_codestream(data)
    cs = data[start:end]
    assert cs[:2] == b"\xff\x4f", "codestream does not start with SOC"
    pos = 2
    main = []
    info = {}
    while True:
        (m,) = struct.unpack(">H", cs[pos:pos + 2])
        if m == 0xFF90:
            break
        (lm,) = struct.unpack(">H", cs[pos + 2:pos + 4])
        seg = cs[pos + 4:pos + 2 + lm]
        name = MARKER_NAMES.get(m, hex(m))
        main.append(name)
        if name == "SIZ":
            (_, xsiz, ysiz, xo, yo, xt, yt, xto, yto, csiz) = struct.unpack(
                ">HIIIIIIIIH", seg[:36])
            info["siz"] = dict(width=xsiz - xo, height=ysiz - yo,
                               tile=(xt, yt), components=csiz,
                               depth=[(b & 0x7F) + 1 for b in seg[36::3][:csiz]])
            tx = -(-(xsiz - xto) // xt)
            ty = -(-(ysiz - yto) // yt)
            info["tiles_grid"] = (tx, ty)
        elif name == "COD":
            info["cod"] = parse_cod(seg)
        pos += 2 + lm
    main_header_bytes = pos
    # tile-parts
    tileparts = 0
    tiles = set()
    plt_segments = 0
    tp_header_markers = {}
    sop = eph = 0
    while pos + 2 <= len(cs):
        (m,) = struct.unpack(">H", cs[pos:pos + 2])
        if m == 0xFFD9:
            break
        assert m == 0xFF90, "expected SOT at %d, got %x" % (pos, m)
        (lsot, isot, psot, tpsot, tnsot) = struct.unpack(
            ">HHIBB", cs[pos + 2:pos + 12])
        tp_start = pos
        tp_end = pos + psot if psot else len(cs) - 2
        tileparts += 1
        tiles.add(isot)
        p = pos + 2 + lsot
        while True:
            (m,) = struct.unpack(">H", cs[p:p + 2])
            if m == 0xFF93:
                p += 2
                break
            (lm,) = struct.unpack(">H", cs[p + 2:p + 4])
            name = MARKER_NAMES.get(m, hex(m))
            tp_header_markers[name] = tp_header_markers.get(name, 0) + 1
            if name == "PLT":
                plt_segments += 1
            p += 2 + lm
        body = cs[p:tp_end]
        sop += body.count(b"\xff\x91\x00\x04")
        # drop SOP segments first: their 16-bit packet counter can end in
        # 0xFF and the next (packet-header) byte can be 0x92
        eph += re.sub(b"\xff\x91\x00\x04..", b"", body, flags=re.S).count(b"\xff\x92")
        pos = tp_end
        _ = tp_start
    info.update(
        main_header_markers=main,
        main_header_bytes=main_header_bytes,
        tiles=len(tiles),
        tile_parts=tileparts,
        tile_part_header_markers=tp_header_markers,
        plt_segments=plt_segments,
        sop_markers=sop,
        eph_markers=eph,
        codestream_bytes=len(cs),
        file_bytes=len(data),
    )
    return info


def fmt(path, i):
    s, c = i["siz"], i["cod"]
    prec = ",".join("[%d,%d]" % p for p in c["precincts_high_to_low"]) or "none (max)"
    bpp = i["file_bytes"] * 8 / (s["width"] * s["height"])
    lines = [
        path,
        "  size            %dx%d, %d components, %s bit" % (
            s["width"], s["height"], s["components"],
            "/".join(map(str, s["depth"]))),
        "  tiles           %dx%d tile size, %dx%d grid = %d tiles, %d tile-parts" % (
            s["tile"][0], s["tile"][1], i["tiles_grid"][0], i["tiles_grid"][1],
            i["tiles"], i["tile_parts"]),
        "  transform       %s, MCT=%d" % (c["transform"], c["mct"]),
        "  resolutions     %d (%d DWT levels)" % (c["resolutions"], c["decomp_levels"]),
        "  layers          %d" % c["layers"],
        "  progression     %s" % c["progression"],
        "  code-blocks     %dx%d (style 0x%02x)" % (c["codeblock"] + (c["cblk_style"],)),
        "  precincts       %s (highest resolution first)" % prec,
        "  SOP/EPH in COD  %s/%s; in data: %d SOP, %d EPH" % (
            c["sop"], c["eph"], i["sop_markers"], i["eph_markers"]),
        "  main header     %s (%d bytes)" % (" ".join(i["main_header_markers"]),
                                             i["main_header_bytes"]),
        "  tile-part hdrs  %s" % (" ".join("%s x%d" % kv for kv in
                                           sorted(i["tile_part_header_markers"].items()))
                                  or "(no markers)"),
        "  file            %d bytes, %.3f bpp" % (i["file_bytes"], bpp),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        print(fmt(path, summarise(path)))
