"""Image codecs that the imaging libraries lack or decode wrongly.

:mod:`mammocad.codecs.ljpeg` decodes lossless JPEG (T.81 process 14), the format of
DDSM's ``.LJPEG`` files; :mod:`mammocad.codecs.pgm` reads binary PGM, mini-MIAS's films.
"""
