"""ImageNet weights bundled with the package, for machines that cannot download any.

Paper §3 fine-tunes ImageNet-pretrained MobileNets. Where torchvision's and timm's float
weights cannot be had (no network: air-gapped hospital machines), the two MobileNets of
Table 1 take ImageNet weights from the Apache-2.0 int8 TFLite models shipped in
``weights/`` (origin and checksums in ``weights/NOTICE``): MobileNet-v2 1.0/224 with its
1001-class classifier, and the MobileNet-v1 1.0/224 embedding extractor (no classifier).

The flatbuffer is read with the ``tflite`` package and every weight is dequantized to float
at load time (nothing is written to disk). TensorFlow folds batch-norm into the
convolutions; the folded weight goes into the PyTorch convolution and the folded bias into
the following batch-norm, given identity statistics, so the state dict keeps the library's
own keys and an eval-mode model adds exactly that bias.

The float model reproduces TFLite only on TFLite's own architecture, which differs from the
libraries' in two places, both part of :func:`tf_architecture` and so of every model built
for these weights (training, checkpoint reloading, ONNX and TorchScript export):

* TensorFlow's SAME padding: a stride-2 convolution on an even size pads 0 before and 1
  after, PyTorch pads symmetrically (:class:`TFSamePadConv2d`).
* The input range: the TF models take pixels mapped to [-1, 1]; a backbone whose spec
  normalises with other statistics (torchvision's MobileNet-v2: ImageNet mean and std)
  gets a fixed affine map in its stem (:class:`TFInputConv2d`), so callers keep
  normalising as the spec says.

Modules: :mod:`~mammocad.models.bundled.reader` (the flatbuffer's weighted layers,
dequantized), :mod:`~mammocad.models.bundled.architecture` (TFLite's padding and input
range in PyTorch) and :mod:`~mammocad.models.bundled.load` (the bundled files, and their
layers mapped onto the models).
"""

from mammocad.models.bundled.architecture import (
    TF_MEAN,
    TF_STD,
    TFInputConv2d,
    TFSamePadConv2d,
    tf_architecture,
)
from mammocad.models.bundled.load import (
    LABELS_FILE,
    SHA256,
    WEIGHTS_DIR,
    BundledWeightsMismatch,
    build_bundled,
    bundled_path,
    imagenet_labels,
    load_tflite_weights,
    weighted_layers,
)
from mammocad.models.bundled.reader import BundledWeightsUnavailable, TFLiteLayer, read_tflite

__all__ = [
    "LABELS_FILE",
    "SHA256",
    "TF_MEAN",
    "TF_STD",
    "WEIGHTS_DIR",
    "BundledWeightsMismatch",
    "BundledWeightsUnavailable",
    "TFInputConv2d",
    "TFLiteLayer",
    "TFSamePadConv2d",
    "build_bundled",
    "bundled_path",
    "imagenet_labels",
    "load_tflite_weights",
    "read_tflite",
    "tf_architecture",
    "weighted_layers",
]
