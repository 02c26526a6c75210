"""Which images and findings of a DDSM case are used, and why the others are skipped.

A case's ``.ics`` and overlays are read and each image is planned as normal, as holding
usable abnormalities, or skipped with a reason (see :mod:`mammocad.sources.ddsm`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammocad.manifest import PATHOLOGY_CLASS, SEVERITY
from mammocad.sources.ddsm.ics import IcsInfo, read_ics
from mammocad.sources.ddsm.overlay import Abnormality, parse_overlay

_VIEWS = {"LEFT_CC", "LEFT_MLO", "RIGHT_CC", "RIGHT_MLO"}
_PATHOLOGIES = {"MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK"}


def _find_file(folder: Path, view: str, suffix: str) -> Path | None:
    """``<name>.<VIEW>.<SUFFIX>`` in a case folder, matched case-insensitively."""
    ending = f".{view}.{suffix}".upper()
    matches = sorted(p for p in folder.iterdir() if p.name.upper().endswith(ending))
    return matches[0] if matches else None


def _skip(file: Path | str, case: str, image: str, reason: str, root: Path) -> dict[str, str]:
    try:
        shown = Path(file).relative_to(root).as_posix()
    except ValueError:
        shown = str(file)
    return {"file": shown, "case": case, "image": image, "reason": reason}


@dataclass
class _Case:
    ics_path: Path
    info: IcsInfo
    plans: list[dict[str, Any]]  # per usable image: view, ljpeg, ics, abnormalities, normal
    label: str = "NORMAL"  # worst pathology, for the stratified split


def _plan_case(
    ics_path: Path, root: Path, skipped: list[dict[str, str]], counts: Counter
) -> _Case | None:
    """Reads a case's text files and decides which images and findings to write."""
    try:
        info = read_ics(ics_path)
    except (OSError, ValueError, UnicodeError) as exc:
        skipped.append(_skip(ics_path, ics_path.stem, "", f"unreadable .ics: {exc}", root))
        return None
    folder = ics_path.parent
    overlays: dict[str, Path | None] = {
        view: _find_file(folder, view, "OVERLAY") for view in info.images
    }
    # Only cases with no outlined finding at all are normal: the unmarked breast of a case
    # with findings was not verified by follow-up.
    normal_case = not any(overlays.values()) and not any(
        image.overlay for image in info.images.values()
    )
    case = _Case(ics_path=ics_path, info=info, plans=[])
    worst = "NORMAL"
    for view, image in info.images.items():
        name = f"{info.case_name}.{view}"
        if view not in _VIEWS:
            skipped.append(_skip(ics_path, info.case_name, name, f"unsupported view {view}", root))
            continue
        ljpeg = _find_file(folder, view, "LJPEG")
        if ljpeg is None:
            skipped.append(
                _skip(folder, info.case_name, name, f"no *.{view}.LJPEG file in the case", root)
            )
            continue
        overlay = overlays[view]
        if overlay is None:
            if normal_case:
                case.plans.append(
                    {"view": view, "ljpeg": ljpeg, "ics": image, "abn": (), "normal": True}
                )
            elif image.overlay:
                skipped.append(
                    _skip(folder, info.case_name, name, "overlay listed in .ics not found", root)
                )
            else:
                counts["unmarked_images_of_abnormal_cases"] += 1
                skipped.append(
                    _skip(
                        ljpeg,
                        info.case_name,
                        name,
                        "no overlay in a case with findings: not verified normal",
                        root,
                    )
                )
            continue
        try:
            abnormalities = parse_overlay(overlay)
        except (OSError, ValueError, UnicodeError) as exc:
            skipped.append(
                _skip(overlay, info.case_name, name, f"unreadable overlay: {exc}", root)
            )
            continue
        usable: list[tuple[int, Abnormality]] = []
        numbers = [a.number for a in abnormalities]
        for position, abnormality in enumerate(abnormalities, start=1):
            number = abnormality.number if numbers.count(abnormality.number) == 1 else position
            where = f"{name}#{number}"
            reason = ""
            if abnormality.pathology == "UNPROVEN":
                reason = "pathology UNPROVEN"
            elif abnormality.pathology not in _PATHOLOGIES:
                reason = f"unknown pathology {abnormality.pathology or 'missing'!r}"
            elif abnormality.kind not in ("mass", "calcification"):
                reason = f"unsupported lesion type {abnormality.kind or 'missing'!r}"
            elif not abnormality.outlines:
                reason = "no outline"
            if reason:
                counts["abnormalities_skipped"] += 1
                skipped.append(_skip(overlay, info.case_name, where, reason, root))
                continue
            if len(abnormality.lesion_types) > 1:
                counts["abnormalities_with_several_lesion_types"] += 1
            usable.append((number, abnormality))
            if SEVERITY[abnormality.pathology] > SEVERITY[worst]:
                worst = abnormality.pathology
        if not usable:
            skipped.append(
                _skip(ljpeg, info.case_name, name, "no usable abnormality in the overlay", root)
            )
            continue
        case.plans.append(
            {"view": view, "ljpeg": ljpeg, "ics": image, "abn": tuple(usable), "normal": False}
        )
    case.label = PATHOLOGY_CLASS[worst]
    return case
