"""Lossless JPEG (ITU-T T.81 process 14, SOF3) decoding, lenient enough for DDSM's files.

The stream is parsed here (:func:`decode_ljpeg`), tolerating what the PVRG files of DDSM
(:mod:`mammocad.sources.ddsm`) lack or get wrong (no SOI or EOI, a missing SOF when the
``.ics`` gives the frame, trailing bytes), and rebuilt as a canonical SOF3 stream. pylibjpeg-libjpeg (already a
dependency, for JPEG-Lossless DICOM) decodes it; a vectorised pure-numpy decoder
(Huffman symbols by table look-up on 16-bit windows, predictors 1-7 by cumulative sums) is
the fallback and the reference. A libjpeg result is accepted only if re-coding its
residuals with the file's Huffman table yields exactly the scan's length: libjpeg returns
garbage instead of an error for a truncated scan. The ``.ics`` rows and columns override
the stream header: some PVRG headers hold the two transposed (noted by ``aaalgo/ljpeg``),
and the decoded sequence is then reshaped to the ``.ics`` frame, as the original tool
chain (``jpeg -d`` output read with the ``.ics`` size) did.

Modules: :mod:`~mammocad.codecs.ljpeg.stream` (:class:`LjpegError`, the lenient marker
parse, restart intervals, the canonical SOF3 stream),
:mod:`~mammocad.codecs.ljpeg.numpy_decoder` (the pure-numpy decoder),
:mod:`~mammocad.codecs.ljpeg.libjpeg_decoder` (libjpeg's decode and its check) and
:mod:`~mammocad.codecs.ljpeg.decode` (:func:`decode_ljpeg`).
"""

from mammocad.codecs.ljpeg.decode import decode_ljpeg
from mammocad.codecs.ljpeg.stream import LjpegError

__all__ = ["LjpegError", "decode_ljpeg"]
