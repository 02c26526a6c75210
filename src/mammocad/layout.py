"""Where every stage reads and writes: the pipeline's file layout, stated once.

Paths are relative to the repository root, as ``dvc.yaml`` writes them; :func:`at` makes
one absolute. Files that exist once per fine-tuning entry (``mobilenet_v1``,
``mobilenet_v1-scratch``, ...) are functions of the entry. :func:`stage_files` says, for each
stage of ``dvc.yaml``, which of these paths it reads and which it writes;
``tests/test_layout.py`` checks ``dvc.yaml``'s data ``deps``, ``outs`` and ``metrics``
against it, and checks that no stage module spells a data path itself, so the stages,
this module and ``dvc.yaml`` cannot drift apart.

Files under ``metrics/timing/`` (seconds, latencies, machine facts) are written beside the
metrics by :mod:`mammocad.timing`; they are committed with git and are not DVC outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mammocad.entries import SHALLOW

# --- data ----------------------------------------------------------------------------------
RAW = "data/raw"  # the source's CBIS-DDSM-style tree (download)
CONVERTED = "data/converted"  # 16-bit PNGs + manifest.csv (convert)
ENHANCED = "data/enhanced"  # CLAHE + median filtered PNGs (enhance)
PATCHES = "data/patches"  # ROI patches and down-sized full images (patches)
PATCH_MANIFEST = f"{PATCHES}/manifest.csv"
SPLIT = "data/split"  # train/val/test tables (split)
SPLIT_TABLE = f"{SPLIT}/split.csv"
TEST_TABLE = f"{SPLIT}/test.csv"
AUGMENTED = "data/augmented"  # augmented training images (augment)
LOCALIZED = "data/localize"  # heatmap overlays of every test mammogram (localize)
SYSTEM_IMAGES = f"{LOCALIZED}/system_images.csv"

# --- metrics -------------------------------------------------------------------------------
METRICS = "metrics"
CONVERT_METRICS = "metrics/convert.json"
PATCHES_METRICS = "metrics/patches.json"
SPLIT_METRICS = "metrics/split.json"
SHALLOW_METRICS = f"metrics/{SHALLOW}.json"
TRAIN_DIR = "metrics/train"
EVAL_DIR = "metrics/eval"
PREDICTIONS_DIR = "metrics/predictions"
ROC_DIR = "metrics/curves/roc"
PR_DIR = "metrics/curves/pr"
CONFUSION_DIR = "metrics/confusion"
HISTORY_DIR = "metrics/history"
EXPORT_DIR = "metrics/export"
FROC_DIR = "metrics/froc"
LOCALIZE_METRICS = "metrics/localize.json"
LOCALIZE_IMAGES = "metrics/localize_images.csv"
SYSTEM_METRICS = "metrics/system.json"
EXPORT_SUMMARY = "metrics/export.json"
REFERENCE = "metrics/reference.json"
#: The FROC curves the localize stage writes, one per detector.
FROC_CURVES = ("patch_network", "cascade")

# --- reports -------------------------------------------------------------------------------
REPORT_OVERLAYS = "reports/localize"
TABLE1_MD = "reports/table1.md"
TABLE1_CSV = "reports/table1.csv"
ROC_FIGURE = "reports/roc.png"
FROC_FIGURE = "reports/froc.png"
#: The deployment table (paper §4.3) holds measured latencies: machine facts, like the files
#: under ``metrics/timing/``. The report stage writes it but does not declare it, so that a
#: rerun with the same science leaves ``dvc.lock`` as it was.
DEPLOYMENT_MD = "reports/deployment.md"
DEPLOYMENT_CSV = "reports/deployment.csv"
DEPLOYMENT_FIGURE = "reports/deployment.png"


#: The MLflow store's artifact folder (runs' files and logged models); not a DVC output.
MLFLOW_ARTIFACTS = "mlartifacts"
#: The runs the track stage logged, with their fingerprints (DVC's cache, not Git).
MLFLOW_RUNS = "metrics/mlflow_runs.json"


# --- per entry -----------------------------------------------------------------------------
#: Checkpoints and deployment files.
MODELS = "models"


def checkpoint(entry: str) -> str:
    """The trained model of an entry (or of :data:`SHALLOW`)."""
    return f"{MODELS}/{entry}.pt"


def export_folder(entry: str) -> str:
    """The deployment files of an exported entry (ONNX, TorchScript, int8 and the CAM graph
    of ``mammocad predict``), or of :data:`SHALLOW` (its ONNX graph)."""
    return f"models/export/{entry}"


def train_metrics(entry: str) -> str:
    return f"{TRAIN_DIR}/{entry}.json"


def eval_metrics(entry: str) -> str:
    return f"{EVAL_DIR}/{entry}.json"


def export_metrics(entry: str) -> str:
    return f"{EXPORT_DIR}/{entry}.json"


def predictions(entry: str) -> str:
    return f"{PREDICTIONS_DIR}/{entry}.json"


def history(entry: str) -> str:
    return f"{HISTORY_DIR}/{entry}.csv"


def roc_curve(entry: str) -> str:
    return f"{ROC_DIR}/{entry}.csv"


def pr_curve(entry: str) -> str:
    return f"{PR_DIR}/{entry}.csv"


def confusion(entry: str) -> str:
    return f"{CONFUSION_DIR}/{entry}.csv"


def froc_curve(name: str) -> str:
    return f"{FROC_DIR}/{name}.csv"


def at(path: str, root: Path | None = None) -> Path:
    """A layout path under ``root`` (default: the working directory, where DVC runs stages)."""
    return (Path.cwd() if root is None else root) / path


# --- what each stage reads and writes -----------------------------------------------------
@dataclass(frozen=True)
class StageFiles:
    """The data a stage reads and the outputs it writes (``outs`` and ``metrics``)."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]
    metrics: tuple[str, ...] = field(default=())


def stage_files(stage: str, entry: str = "") -> StageFiles:
    """The files of ``stage`` (for a per-entry stage, of ``entry``); ``KeyError`` if unknown.

    ``localize``'s ``entry`` is the localizing backbone (``localize.backbone``).
    """
    e = entry
    table: dict[str, StageFiles] = {
        "download": StageFiles((), (RAW,)),
        "convert": StageFiles((RAW,), (CONVERTED,), (CONVERT_METRICS,)),
        "enhance": StageFiles((CONVERTED,), (ENHANCED,)),
        "patches": StageFiles((ENHANCED,), (PATCHES,), (PATCHES_METRICS,)),
        "split": StageFiles((PATCH_MANIFEST,), (SPLIT,), (SPLIT_METRICS,)),
        "augment": StageFiles((SPLIT_TABLE, PATCHES), (AUGMENTED,)),
        "train_shallow": StageFiles(
            (SPLIT, AUGMENTED, PATCHES),
            (checkpoint(SHALLOW), history(SHALLOW), roc_curve(SHALLOW), confusion(SHALLOW)),
            (SHALLOW_METRICS,),
        ),
        "finetune": StageFiles(
            (SPLIT, AUGMENTED, PATCHES), (checkpoint(e), history(e)), (train_metrics(e),)
        ),
        "evaluate": StageFiles(
            (checkpoint(e), train_metrics(e), SPLIT, PATCHES),
            (predictions(e), roc_curve(e), pr_curve(e), confusion(e)),
            (eval_metrics(e),),
        ),
        "export": StageFiles(
            (checkpoint(e), eval_metrics(e), SPLIT, AUGMENTED, PATCHES),
            (export_folder(e),),
            (export_metrics(e),),
        ),
        "export_shallow": StageFiles(
            (checkpoint(SHALLOW), SPLIT, AUGMENTED, PATCHES), (export_folder(SHALLOW),)
        ),
        "localize": StageFiles(
            (checkpoint(e), checkpoint(SHALLOW), SHALLOW_METRICS, ENHANCED, PATCHES, SPLIT_TABLE),
            (
                LOCALIZED,
                REPORT_OVERLAYS,
                *(froc_curve(n) for n in FROC_CURVES),
                LOCALIZE_IMAGES,
            ),
            (LOCALIZE_METRICS, SYSTEM_METRICS),
        ),
        "report": StageFiles(
            (
                EVAL_DIR,
                PREDICTIONS_DIR,
                TEST_TABLE,
                SHALLOW_METRICS,
                LOCALIZE_METRICS,
                SYSTEM_METRICS,
                FROC_DIR,
                ROC_DIR,
                EXPORT_DIR,
            ),
            (
                TABLE1_MD,
                TABLE1_CSV,
                ROC_FIGURE,
                FROC_FIGURE,
            ),
            (EXPORT_SUMMARY, REFERENCE),
        ),
        "track": StageFiles(
            (
                MODELS,
                TRAIN_DIR,
                EVAL_DIR,
                ROC_DIR,
                SHALLOW_METRICS,
                LOCALIZE_METRICS,
                SYSTEM_METRICS,
                REPORT_OVERLAYS,
                FROC_DIR,
                TEST_TABLE,
                PATCHES,
            ),
            (MLFLOW_RUNS,),
        ),
    }
    return table[stage]


#: Stages that run once per entry of a params list (``foreach`` in ``dvc.yaml``).
PER_ENTRY = ("finetune", "evaluate", "export")
