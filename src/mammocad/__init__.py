"""mammocad: a reproducible pipeline for mammogram classification and localization.

Reproduces and extends Ansar et al., "Breast Cancer Detection and Localization using
MobileNet based Transfer Learning for Mammograms".
"""

__version__ = "0.1.0"
