"""RFC 6381 ``codecs`` strings from sample-entry configuration boxes.

* ``avc1``/``avc3`` + ``avcC`` → ``avc1.PPCCLL`` (profile, compatibility, level as hex);
* ``hvc1``/``hev1`` + ``hvcC`` → ``hvc1.[A-C]P.C.TL[.XX…]`` (ISO/IEC 14496-15 Annex E);
* ``av01`` + ``av1C`` → ``av01.P.LLT.DD`` (AV1-ISOBMFF, "Codecs Parameter String");
* ``mp4a`` + ``esds`` → ``mp4a.40.<AudioObjectType>`` for MPEG-4 audio, else ``mp4a.<OTI hex>``;
* ``Opus`` → ``opus``; any other entry → its fourcc.

Also the channel counts these configurations carry, which beat the sample entry's
``channelcount``: ffmpeg writes the ISO template value 2 there whatever the layout.
"""

from __future__ import annotations

from .boxes import FieldReader
from .errors import FMP4Error

OTI_MPEG4_AUDIO = 0x40
AOT_ESCAPE = 31  # an AudioObjectType of 31 continues in 6 more bits, offset by 32
EXPLICIT_FREQUENCY = 15  # samplingFrequencyIndex 15: a 24-bit frequency follows
# ISO/IEC 14496-3 channelConfiguration → channel count (0: a program config element says)
CHANNEL_CONFIGURATIONS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}

# ISO/IEC 14496-1 descriptor tags inside esds
ES_DESCRIPTOR = 0x03
DECODER_CONFIG_DESCRIPTOR = 0x04
DECODER_SPECIFIC_INFO = 0x05


def avc_codec(entry: str, avcc: bytes) -> str:
    """``avc1.64001f``: AVCProfileIndication, profile_compatibility, AVCLevelIndication."""
    fields = FieldReader(avcc, 0, len(avcc), "avcC")
    fields.u8("configurationVersion")
    profile = fields.u8("AVCProfileIndication")
    compatibility = fields.u8("profile_compatibility")
    level = fields.u8("AVCLevelIndication")
    return f"{entry}.{profile:02x}{compatibility:02x}{level:02x}"


def hevc_codec(entry: str, hvcc: bytes) -> str:
    """``hvc1.1.6.L93.B0``: profile space + idc, compatibility flags bit-reversed in hex, tier
    and level, then the six constraint bytes with trailing zero bytes left off."""
    fields = FieldReader(hvcc, 0, len(hvcc), "hvcC")
    fields.u8("configurationVersion")
    packed = fields.u8("general_profile_space/tier/idc")
    compatibility = fields.u32("general_profile_compatibility_flags")
    constraints = fields.raw(6, "general_constraint_indicator_flags")
    level = fields.u8("general_level_idc")
    space = ("", "A", "B", "C")[packed >> 6]
    tier = "H" if packed & 0x20 else "L"
    # Flag 0 is the most significant bit in hvcC; the string wants flag 31 there.
    reversed_compatibility = int(f"{compatibility:032b}"[::-1], 2)
    text = f"{entry}.{space}{packed & 0x1F}.{reversed_compatibility:X}.{tier}{level}"
    return text + "".join(f".{byte:02X}" for byte in constraints.rstrip(b"\x00"))


def av1_codec(entry: str, av1c: bytes) -> str:
    """``av01.0.04M.08``: seq_profile, seq_level_idx_0 (two digits) and seq_tier_0 (M or H),
    bit depth (two digits) from high_bitdepth and twelve_bit. The optional fields after it
    (monochrome, subsampling, colour) are left off, which means 4:2:0 BT.709 limited range."""
    fields = FieldReader(av1c, 0, len(av1c), "av1C")
    marker = fields.u8("marker/version")
    if marker != 0x81:
        raise FMP4Error(f"av1C: marker/version byte {marker:#04x} is not 0x81")
    profile_level = fields.u8("seq_profile/seq_level_idx_0")
    flags = fields.u8("seq_tier_0/high_bitdepth/twelve_bit")
    profile = profile_level >> 5
    high_bitdepth, twelve_bit = flags & 0x40, flags & 0x20
    depth = (12 if twelve_bit else 10) if high_bitdepth and profile == 2 else (
        10 if high_bitdepth else 8)
    tier = "H" if flags & 0x80 else "M"
    return f"{entry}.{profile}.{profile_level & 0x1F:02d}{tier}.{depth:02d}"


def mp4a_codec(esds: bytes) -> str:
    """``mp4a.40.2`` from the esds DecoderConfigDescriptor and its AudioSpecificConfig."""
    object_type, config = _mpeg4_audio(esds)
    if object_type != OTI_MPEG4_AUDIO:
        return f"mp4a.{object_type:02X}"
    return "mp4a.40" if config is None else f"mp4a.40.{config[0]}"


def mp4a_channels(esds: bytes) -> int | None:
    """Channels from the AudioSpecificConfig's channelConfiguration; None where it does not say
    (not MPEG-4 audio, or configuration 0: then a program config element decides)."""
    object_type, config = _mpeg4_audio(esds)
    if object_type != OTI_MPEG4_AUDIO or config is None:
        return None
    return CHANNEL_CONFIGURATIONS.get(config[1])


def opus_channels(dops: bytes) -> int:
    """OutputChannelCount from the Opus ``dOps`` box."""
    fields = FieldReader(dops, 0, len(dops), "dOps")
    fields.u8("Version")
    return fields.u8("OutputChannelCount")


def _mpeg4_audio(esds: bytes) -> tuple[int, tuple[int, int] | None]:
    """objectTypeIndication, and for MPEG-4 audio with a DecoderSpecificInfo the
    AudioSpecificConfig's (audioObjectType, channelConfiguration)."""
    box = FieldReader(esds, 0, len(esds), "esds")
    box.full_box_header()
    es = _find_descriptor(box, ES_DESCRIPTOR, "ES_Descriptor")
    es.u16("ES_ID")
    es_flags = es.u8("ES flags")
    if es_flags & 0x80:  # streamDependenceFlag
        es.u16("dependsOn_ES_ID")
    if es_flags & 0x40:  # URL_Flag
        es.skip(es.u8("URLlength"), "URLstring")
    if es_flags & 0x20:  # OCRstreamFlag
        es.u16("OCR_ES_Id")
    decoder = _find_descriptor(es, DECODER_CONFIG_DESCRIPTOR, "DecoderConfigDescriptor")
    object_type = decoder.u8("objectTypeIndication")
    decoder.skip(12, "streamType/bufferSizeDB/maxBitrate/avgBitrate")
    if object_type != OTI_MPEG4_AUDIO or decoder.remaining == 0:
        return object_type, None
    specific = _find_descriptor(decoder, DECODER_SPECIFIC_INFO, "AudioSpecificConfig")
    # The fields wanted take at most 5 + 6 + 4 + 24 + 4 bits: six bytes.
    bits = _BitReader(
        specific.raw(min(specific.remaining, 6), "AudioSpecificConfig"), "AudioSpecificConfig"
    )
    audio_object_type = bits.read(5, "audioObjectType")
    if audio_object_type == AOT_ESCAPE:
        audio_object_type = 32 + bits.read(6, "audioObjectTypeExt")
    if bits.read(4, "samplingFrequencyIndex") == EXPLICIT_FREQUENCY:
        bits.read(24, "samplingFrequency")
    return object_type, (audio_object_type, bits.read(4, "channelConfiguration"))


class _BitReader:
    """Most-significant-bit-first fields from a few bytes."""

    def __init__(self, data: bytes, what: str) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = 8 * len(data)
        self.what = what

    def read(self, n: int, field: str) -> int:
        if n > self.left:
            raise FMP4Error(f"{self.what}: truncated at {field}")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)


def _find_descriptor(parent: FieldReader, tag: int, name: str) -> FieldReader:
    """Skip sibling descriptors in ``parent`` up to the one with ``tag``; a reader over its body."""
    while parent.remaining:
        found = parent.u8(f"{name} tag")
        size = 0
        for _ in range(4):  # expandable size: 7 bits per byte, high bit = another byte follows
            byte = parent.u8(f"{name} size")
            size = (size << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        start = parent.pos
        parent.skip(size, name)
        if found == tag:
            return FieldReader(parent.data, start, start + size, f"esds {name}")
    raise FMP4Error(f"esds: no {name} (descriptor tag {tag:#04x})")
