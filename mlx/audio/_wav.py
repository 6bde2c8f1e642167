"""Plain PCM and float WAV files read with numpy, bit for bit what soundfile returns.

libsndfile costs about 0.4 ms a file in opening and closing alone (through cffi), more than
resampling a one-second clip: on a folder of short clips it was most of the loading time.
The samples of a plain WAV file are one contiguous little-endian block after a small header,
so numpy reads them directly. Anything this module does not fully understand (another format,
a truncated or odd-sized data chunk, big-endian RIFX, RF64, compressed codecs, 8-bit or
extensible files whose valid bits differ from their container) returns None, and the caller
reads the file with soundfile as before, so its errors and skip reasons stay libsndfile's.

The scale factors are libsndfile's (pcm.c: ``(float) sample * (1.0f / 0x80000000)`` on the
sample shifted to 32 bits), powers of two, so the products are exact and the float32 results
match sample for sample; the tests compare every subtype against ``soundfile.read``.
"""

import struct

import numpy as np

__all__ = ["read_wav"]

_PCM, _IEEE_FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# Bytes of each supported sample: (format tag, bits) -> numpy dtype of the stored sample.
_SAMPLE = {
    (_PCM, 16): np.dtype("<i2"),
    (_PCM, 24): None,  # three bytes: widened to int32 below
    (_PCM, 32): np.dtype("<i4"),
    (_IEEE_FLOAT, 32): np.dtype("<f4"),
    (_IEEE_FLOAT, 64): np.dtype("<f8"),
}
# The extensible header's sub-format GUID ends in this, after the format tag's two bytes.
_KSDATAFORMAT_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def _format(fmt):
    """(tag, channels, rate, bits) of a fmt chunk's body, or None when it is not plain."""
    if len(fmt) < 16:
        return None
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _KSDATAFORMAT_TAIL:
            return None
        valid_bits = struct.unpack_from("<H", fmt, 18)[0]
        tag = struct.unpack_from("<H", fmt, 24)[0]
        if valid_bits != bits:
            return None
    if (tag, bits) not in _SAMPLE or channels == 0 or block_align != channels * bits // 8:
        return None
    return tag, channels, rate, bits


def read_wav(path, frames_at=None):
    """(float32 samples of shape (n_frames, channels), sample rate) of a plain WAV file, or None.

    Reads at most ``frames_at(rate)`` frames (all when it is negative or ``frames_at`` is None),
    as ``SoundFile.read(frames)`` does. None means "not one this reader takes": read the file
    with soundfile instead.
    """
    with open(path, "rb") as file:  # buffered: the seeks within the header cost no system call
        if file.read(4) != b"RIFF" or file.read(8)[4:] != b"WAVE":
            return None
        size = file.seek(0, 2)
        offset, layout = 12, None
        while offset + 8 <= size:
            file.seek(offset)
            chunk_id, length = struct.unpack("<4sI", file.read(8))
            body = offset + 8
            if chunk_id == b"fmt ":
                layout = _format(file.read(length))
                if layout is None:
                    return None
            elif chunk_id == b"data":
                # No format yet, a truncated or streamed (size 0) data chunk: libsndfile's rules.
                if layout is None or length == 0 or body + length > size:
                    return None
                tag, channels, rate, bits = layout
                width = channels * bits // 8
                if length % width:
                    return None
                n = length // width
                frames = -1 if frames_at is None else frames_at(rate)
                n = n if frames < 0 else min(frames, n)
                return _to_float(file.read(n * width), tag, bits).reshape(n, channels), rate
            offset = body + length + (length & 1)  # chunks are padded to an even size
    return None


def _to_float(raw, tag, bits):
    """Samples as float32 in [-1, 1), scaled exactly as libsndfile scales them."""
    if tag == _IEEE_FLOAT:
        return np.frombuffer(raw, _SAMPLE[tag, bits]).astype(np.float32)
    if bits == 24:
        widened = np.zeros((len(raw) // 3, 4), dtype=np.uint8)
        widened[:, 1:] = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        samples = widened.view("<i4")[:, 0]  # the sample shifted left by 8, as libsndfile does
        bits = 32
    else:
        samples = np.frombuffer(raw, _SAMPLE[tag, bits])
    out = samples.astype(np.float32)
    out *= np.float32(2.0 ** (1 - bits))
    return out
