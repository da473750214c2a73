"""MP4s that lie about their size: a small H.264 clip's headers patched to claim another picture
size, for the bad-input suite's "huge dimensions" inputs.

Patched: the container's track and sample-entry sizes (which FFmpeg does not trust) and,
optionally, the H.264 sequence parameter set (which the decoder does trust, and would allocate
every frame from). The frames themselves stay the small ones.
"""

from __future__ import annotations

import struct
from pathlib import Path


def patch_dimensions(source: Path, path: Path, width: int, height: int, sps: bool) -> Path:
    """Copy an H.264 MP4 (moov after mdat, as ``write_clip`` writes it) claiming ``width`` x
    ``height`` in its video track header and sample entry, and with ``sps`` in its sequence
    parameter set too (the frames stay the small ones)."""
    data = bytearray(source.read_bytes())
    tkhd = _box_path(data, ["moov", "trak", "tkhd"])
    pos, _, size = tkhd[-1]
    struct.pack_into(">II", data, pos + size - 8, width << 16, height << 16)  # 16.16 fixed point
    chain = _box_path(data, ["moov", "trak", "mdia", "minf", "stbl", "stsd", "avc1", "avcC"])
    pos, header, _ = chain[-2]
    struct.pack_into(">HH", data, pos + header + 24, width, height)  # VisualSampleEntry
    if sps:
        pos, header, size = chain[-1]
        body = bytes(data[pos + header : pos + size])
        assert body[5] & 0x1F == 1, "one SPS expected"
        length = struct.unpack(">H", body[6:8])[0]
        new_sps = _patch_sps(body[8 : 8 + length], width, height)
        new_body = body[:6] + struct.pack(">H", len(new_sps)) + new_sps + body[8 + length :]
        data[pos + header : pos + size] = new_body
        for box_pos, _, box_size in chain:  # every enclosing box grows; mdat comes first: no offsets move
            struct.pack_into(">I", data, box_pos, box_size + len(new_body) - len(body))
    path.write_bytes(bytes(data))
    return path


_CHILDREN_AFTER = {"stsd": 8, "avc1": 78}  # bytes of fields before a box's children


def _box_path(data: bytearray, names: list[str], start: int = 0, end: int | None = None, chain=()):
    """[(offset, header size, size)] of the boxes along ``names`` (the first match at each level)."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if kind.decode("latin1") == names[0]:
            here = (*chain, (pos, header, size))
            if len(names) == 1:
                return here
            inner = pos + header + _CHILDREN_AFTER.get(names[0], 0)
            found = _box_path(data, names[1:], inner, pos + size, here)
            if found:
                return found
        pos += size
    return None


def _patch_sps(nal: bytes, width: int, height: int) -> bytes:
    """An H.264 SPS NAL unit with its picture size in macroblocks replaced (bits before and
    after kept, emulation prevention redone)."""
    bits = "".join(f"{b:08b}" for b in _unescape(nal[1:]))
    reader = _Bits(bits)
    profile = reader.u(8)
    reader.u(16)  # constraint flags, level
    reader.ue()  # seq_parameter_set_id
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        if reader.ue() == 3:  # chroma_format_idc
            reader.u(1)
        reader.ue(), reader.ue(), reader.u(1)  # bit depths, qpprime_y_zero_transform_bypass
        assert reader.u(1) == 0, "SPS scaling matrices are not handled"
    reader.ue()  # log2_max_frame_num_minus4
    poc_type = reader.ue()
    assert poc_type in (0, 2), "pic_order_cnt_type 1 is not handled"
    if poc_type == 0:
        reader.ue()
    reader.ue(), reader.u(1)  # max_num_ref_frames, gaps_in_frame_num_allowed
    start = reader.i
    reader.ue(), reader.ue()  # pic_width_in_mbs_minus1, pic_height_in_map_units_minus1
    patched = bits[:start] + _ue(width // 16 - 1) + _ue(height // 16 - 1) + bits[reader.i :]
    patched = patched.rstrip("0")  # up to the stop bit, which moves with the payload; realign
    patched += "0" * (-len(patched) % 8)
    return nal[:1] + _escape(int(patched, 2).to_bytes(len(patched) // 8, "big"))


class _Bits:
    def __init__(self, bits: str):
        self.bits, self.i = bits, 0

    def u(self, n: int) -> int:
        value = int(self.bits[self.i : self.i + n] or "0", 2)
        self.i += n
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bits[self.i] == "0":
            zeros += 1
            self.i += 1
        self.i += 1
        return (1 << zeros) - 1 + self.u(zeros)


def _ue(value: int) -> str:
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def _unescape(payload: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in payload:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)
