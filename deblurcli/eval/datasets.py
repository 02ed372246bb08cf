"""Find a benchmark's blurred/sharp image pairs in whatever layout it was unpacked in.

The same test sets circulate in several trees (the authors' releases, the ``input|target`` form
most deblurring repositories restructure them into, Restormer's ``Datasets/test/<name>/``, the
``testA|testB`` form), and users point at different levels of them. Rather than demand one tree,
``scan_dataset`` tries each known layout at each plausible level and says which it found.

Pairs are always matched by relative path (file extension aside), never by sort order, so a
missing or extra file is reported by name instead of silently shifting every later pair.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import DeblurError, UsageError
from ..imageio.formats import IMAGE_EXTENSIONS

__all__ = [
    "DATASETS",
    "IMAGE_SUFFIXES",
    "DatasetScan",
    "Pair",
    "default_protocol",
    "find_pairs",
    "scan_dataset",
]

DATASETS: tuple[str, ...] = ("gopro", "hide", "realblur-j", "realblur-r", "pairs")
IMAGE_SUFFIXES: frozenset[str] = IMAGE_EXTENSIONS  # the one list, from deblurcli.imageio.formats

# (blurred folder, sharp folder) names used by restructured copies, most common first.
_FOLDER_PAIRS: tuple[tuple[str, str], ...] = (("input", "target"), ("testA", "testB"), ("blur", "sharp"))

# Folder names (normalised: lower case, letters and digits only) a dataset is stored under.
_ALIASES: dict[str, tuple[str, ...]] = {
    "gopro": ("gopro", "goprolarge"),
    "hide": ("hide", "hidedataset"),
    "realblur-j": ("realblurj",),
    "realblur-r": ("realblurr",),
    "pairs": (),
}

_REALBLUR_LISTS = {"realblur-j": "RealBlur_J_test_list.txt", "realblur-r": "RealBlur_R_test_list.txt"}
_HIDE_SPLITS = ("test-close-ups", "test-long-shot")

_TITLES = {
    "gopro": "GoPro test set",
    "hide": "HIDE test set",
    "realblur-j": "RealBlur-J test set",
    "realblur-r": "RealBlur-R test set",
    "pairs": "pair of blurred/sharp folders",
}

_TWO_FOLDER_TREES = """\
  <dir>/test/input/*.png     with  <dir>/test/target/*.png   (or input|target directly in <dir>)
  <dir>/test/testA/*.png     with  <dir>/test/testB/*.png    (testA = blurred, testB = sharp)"""

_EXPECTED = {
    "gopro": """\
  GOPRO_Large/test/<sequence>/blur/*.png  with  GOPRO_Large/test/<sequence>/sharp/*.png
      (point at GOPRO_Large, at its test/ folder or at the folder holding GOPRO_Large;
       blur_gamma/ is not used)
""" + _TWO_FOLDER_TREES + """
  Datasets/test/GoPro/input|target  or  GoPro/test/input|target  (point at Datasets or GoPro)""",
    "hide": """\
  HIDE_dataset/test/test-close-ups/*.png and HIDE_dataset/test/test-long-shot/*.png
      with ground truth of the same file name in HIDE_dataset/GT/
      (point at HIDE_dataset, its test/ folder, or the folder holding it)
""" + _TWO_FOLDER_TREES + """
  Datasets/test/HIDE/input|target  or  HIDE/test/input|target""",
    "realblur-j": """\
  <dir>/RealBlur_J_test_list.txt  (lines 'gt_path blur_path', relative to <dir>)
  <dir>/RealBlur-J_ECC_IMCORR_centroid_itensity_ref/<scene>/gt|blur/*.png
""" + _TWO_FOLDER_TREES + """
  Datasets/test/RealBlur_J/input|target  or  RealBlur_J/test/input|target""",
    "realblur-r": """\
  <dir>/RealBlur_R_test_list.txt  (lines 'gt_path blur_path', relative to <dir>)
  <dir>/RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref/<scene>/gt|blur/*.png
""" + _TWO_FOLDER_TREES + """
  Datasets/test/RealBlur_R/input|target  or  RealBlur_R/test/input|target""",
    "pairs": """\
  <blurred dir> and <sharp dir> given separately, with the same file names (sub-folders allowed)
""" + _TWO_FOLDER_TREES + """
  <dir>/blur/*.png           with  <dir>/sharp/*.png""",
}


@dataclass(frozen=True)
class Pair:
    """One blurred image, its ground truth, and the relative name its restoration is saved under.

    ``sharp`` is None only in `find_pairs`' no-reference mode (a folder of photos with no ground truth).
    """

    name: str
    blur: Path
    sharp: Path | None


@dataclass
class DatasetScan:
    """What was found: the pairs, and every file that could not be paired (so none vanish silently)."""

    dataset: str
    root: Path
    layout: str
    pairs: list[Pair] = field(default_factory=list)
    #: blurred images with no ground truth (paths)
    unmatched_blur: list[Path] = field(default_factory=list)
    #: ground-truth images with no blurred image (not tracked where GT holds other splits too)
    unmatched_sharp: list[Path] = field(default_factory=list)
    #: files a list file names that do not exist
    missing: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.unmatched_blur or self.unmatched_sharp or self.missing)

    def problems(self) -> list[str]:
        """One readable line per kind of problem, for reports and warnings."""
        out = []
        for files, what in (
            (self.unmatched_blur, "blurred image(s) have no ground truth of the same name"),
            (self.unmatched_sharp, "ground-truth image(s) have no blurred image of the same name"),
            (self.missing, "file(s) named in the list do not exist"),
        ):
            if files:
                shown = ", ".join(str(p) for p in files[:3]) + (", ..." if len(files) > 3 else "")
                out.append(f"{len(files)} {what}: {shown}")
        return out

    def raise_if_incomplete(self) -> None:
        """Refuse to benchmark a partial set: a mean over fewer images is not the paper's number."""
        problems = self.problems()
        if problems:
            raise DeblurError(
                f"{self.layout} under {self.root} is incomplete: {'; '.join(problems)}; "
                f"restore the missing files, or allow unmatched files to score only the {len(self.pairs)} "
                "complete pairs", hint=("allow_unmatched", True),
            )


def default_protocol(dataset: str) -> str:
    """RealBlur's ground truth is not pixel-aligned to any restoration, so it needs its own protocol."""
    return "realblur" if _check_dataset(dataset).startswith("realblur") else "matlab"


def find_pairs(
    dataset: str,
    data_dir: str | Path,
    *,
    sharp_dir: str | Path | None = None,
    allow_unmatched: bool = False,
) -> list[Pair]:
    """The dataset's pairs, sorted by name; raises DeblurError on unmatched files unless allowed.

    For ``pairs`` with no sharp folder, a folder that holds photos itself (not only in sub-folders)
    and matches no paired layout is a set without ground truth: every photo under it comes back
    with ``sharp=None``, and `evaluate` scores it with the no-reference measure alone. Photos only
    in sub-folders still get the layout error, since a misnamed ground-truth tree looks like that.
    """
    try:
        scan = scan_dataset(dataset, data_dir, sharp_dir=sharp_dir)
    except DeblurError:
        root = Path(data_dir).expanduser()
        if dataset != "pairs" or sharp_dir is not None or not root.is_dir() or not any(
                p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                for p in root.iterdir()):
            raise
        return [Pair(p.relative_to(root).as_posix(), p, None) for p in _images(root)]
    if not allow_unmatched:
        scan.raise_if_incomplete()
    return scan.pairs


def scan_dataset(dataset: str, data_dir: str | Path, *, sharp_dir: str | Path | None = None) -> DatasetScan:
    """Detect the layout under ``data_dir`` and pair its images by name.

    ``sharp_dir`` makes ``data_dir`` the blurred folder and ``sharp_dir`` the ground-truth folder
    (any dataset name; the usual form of ``pairs``).
    """
    dataset = _check_dataset(dataset)
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DeblurError(f"data folder {root} does not exist or is not a folder; pass the dataset's folder")
    if sharp_dir is not None:
        sharp = Path(sharp_dir).expanduser()
        if not sharp.is_dir():
            raise DeblurError(f"sharp folder {sharp} does not exist or is not a folder; pass the ground-truth folder")
        scan = _pair_folders(dataset, root, sharp, "blurred/sharp folders")
        return _finish(scan)

    finders = {
        "gopro": (_find_gopro_release, _find_two_folder),
        "hide": (_find_hide_release, _find_two_folder),
        "realblur-j": (_find_realblur_list, _find_two_folder),
        "realblur-r": (_find_realblur_list, _find_two_folder),
        "pairs": (_find_two_folder,),
    }[dataset]
    for finder in finders:
        scan = finder(dataset, root)
        if scan is not None:
            return _finish(scan)
    raise DeblurError(
        f"no {_TITLES[dataset]} found under {root}. Expected one of these trees:\n"
        f"{_EXPECTED[dataset]}\n"
        "Point the data folder at one of them (or pass the blurred and sharp folders separately)."
    )


# --------------------------------------------------------------------------- helpers


def _check_dataset(dataset: str) -> str:
    key = dataset.strip().lower().replace("_", "-")
    if key in ("realblurj", "realblur-j"):
        key = "realblur-j"
    elif key in ("realblurr", "realblur-r"):
        key = "realblur-r"
    if key not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    return key


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _child(folder: Path, name: str) -> Path | None:
    """A sub-folder by name, ignoring case (``Input``/``input``; GoPro vs GOPRO)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    try:
        for entry in folder.iterdir():
            if entry.name.lower() == name.lower() and entry.is_dir():
                return entry
    except OSError:
        return None
    return None


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _alias_dirs(folder: Path, dataset: str) -> list[Path]:
    aliases = _ALIASES[dataset]
    return [d for d in _subdirs(folder) if _norm(d.name) in aliases]


def _images(folder: Path) -> Iterator[Path]:
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."):
            yield p


def _key(rel: PurePosixPath) -> str:
    """Pairing key: relative path without extension, so a .jpg input may pair with a .png target."""
    return str(rel.with_suffix(""))


def _index(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in _images(folder):
        key = _key(PurePosixPath(p.relative_to(folder).as_posix()))
        if key in out:
            raise DeblurError(
                f"{out[key]} and {p} differ only in extension, so neither can be paired by name; "
                "remove one of them"
            )
        out[key] = p
    return out


def _match(blur_dir: Path, sharp_dir: Path, prefix: str = "") -> tuple[list[Pair], list[Path], list[Path]]:
    blurs, sharps = _index(blur_dir), _index(sharp_dir)
    pairs = [
        Pair(prefix + blurs[k].relative_to(blur_dir).as_posix(), blurs[k], sharps[k])
        for k in blurs
        if k in sharps
    ]
    unmatched_blur = [blurs[k] for k in blurs if k not in sharps]
    unmatched_sharp = [sharps[k] for k in sharps if k not in blurs]
    return pairs, unmatched_blur, unmatched_sharp


def _pair_folders(dataset: str, blur_dir: Path, sharp_dir: Path, layout: str) -> DatasetScan:
    pairs, ub, us = _match(blur_dir, sharp_dir)
    return DatasetScan(dataset, blur_dir, f"{layout} ({blur_dir} | {sharp_dir})", pairs, ub, us)


def _finish(scan: DatasetScan) -> DatasetScan:
    if not scan.pairs and not scan.unmatched_blur and not scan.missing:
        raise DeblurError(
            f"{scan.layout} under {scan.root} holds no blurred images; check that the dataset unpacked fully"
        )
    scan.pairs.sort(key=lambda p: p.name)
    seen: dict[str, Pair] = {}
    for p in scan.pairs:
        if p.name in seen:
            raise DeblurError(
                f"{seen[p.name].blur} and {p.blur} would both be saved as {p.name}; rename one of them"
            )
        seen[p.name] = p
    return scan


# --------------------------------------------------------------------------- layouts


def _unique(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p is not None and p.is_dir() and all(p.resolve() != q.resolve() for q in out):
            out.append(p)
    return out


def _find_two_folder(dataset: str, root: Path) -> DatasetScan | None:
    """``input|target`` (or testA|testB, blur|sharp) at the root, in test/, or under a dataset folder."""
    levels: list[Path | None] = [root, _child(root, "test")]
    for base in (root, _child(root, "test")):
        if base is None:
            continue
        for d in _alias_dirs(base, dataset):
            levels += [d, _child(d, "test")]
    for level in _unique(p for p in levels if p is not None):
        for blur_name, sharp_name in _FOLDER_PAIRS:
            b, s = _child(level, blur_name), _child(level, sharp_name)
            if b is not None and s is not None:
                pairs, ub, us = _match(b, s)
                layout = f"{b.name}|{s.name} folders"
                return DatasetScan(dataset, level, layout, pairs, ub, us)
    return None


def _is_gopro_test(folder: Path) -> bool:
    return any(_child(seq, "blur") is not None and _child(seq, "sharp") is not None for seq in _subdirs(folder))


def _find_gopro_release(dataset: str, root: Path) -> DatasetScan | None:
    """``GOPRO_Large/test/<sequence>/blur|sharp``; names are ``<sequence>/<file>`` (blur/ dropped)."""
    candidates: list[Path | None] = [_child(root, "test"), root]
    for d in _alias_dirs(root, dataset):
        candidates.append(_child(d, "test"))
    test_dir = next((c for c in _unique(p for p in candidates if p is not None) if _is_gopro_test(c)), None)
    if test_dir is None:
        return None
    scan = DatasetScan(dataset, test_dir, "GoPro release (<sequence>/blur|sharp)")
    for seq in _subdirs(test_dir):
        blur = _child(seq, "blur")  # blur_gamma/ is the gamma-corrected variant; papers test on blur/
        sharp = _child(seq, "sharp")
        if blur is None:
            continue
        if sharp is None:
            scan.unmatched_blur += list(_images(blur))
            continue
        pairs, ub, us = _match(blur, sharp, prefix=f"{seq.name}/")
        scan.pairs += pairs
        scan.unmatched_blur += ub
        scan.unmatched_sharp += us
    return scan


def _find_hide_release(dataset: str, root: Path) -> DatasetScan | None:
    """HIDE: ``test/test-close-ups|test-long-shot/*.png`` with ground truth by file name in ``GT/``.

    ``GT/`` also holds the training split's ground truth, so unused GT files are not reported.
    """
    candidates: list[Path | None] = [root]
    candidates += _alias_dirs(root, dataset)
    if root.name.lower() == "test":
        candidates.append(root.parent)
    for base in _unique(p for p in candidates if p is not None):
        test, gt = _child(base, "test"), _child(base, "GT")
        if test is None or gt is None:
            continue
        splits = [s for s in (_child(test, n) for n in _HIDE_SPLITS) if s is not None]
        if not splits:
            continue
        gts: dict[str, Path] = {}
        for p in _images(gt):
            gts.setdefault(p.name, p)
            gts.setdefault(p.stem, p)
        scan = DatasetScan(dataset, base, "HIDE release (test/test-close-ups|test-long-shot + GT/)")
        for split in splits:
            for p in _images(split):
                g = gts.get(p.name) or gts.get(p.stem)
                if g is None:
                    scan.unmatched_blur.append(p)
                else:
                    scan.pairs.append(Pair(f"{split.name}/{p.relative_to(split).as_posix()}", p, g))
        return scan
    return None


def _realblur_name(blur_rel: PurePosixPath) -> str:
    """``<dataset dir>/scene230/blur/blur_1.png`` -> ``scene230/blur_1.png`` (as GoPro drops blur/)."""
    parts = list(blur_rel.parts)
    if len(parts) > 2:
        parts = parts[1:]
    for i in range(len(parts) - 2, -1, -1):
        if parts[i].lower() == "blur":
            del parts[i]
            break
    return "/".join(parts)


def _find_realblur_list(dataset: str, root: Path) -> DatasetScan | None:
    """RealBlur's own release: a ``RealBlur_?_test_list.txt`` of ``gt_path blur_path`` lines."""
    list_name = _REALBLUR_LISTS[dataset]
    bases = [root] + _subdirs(root)
    if root.name.lower() == "test":
        bases.append(root.parent)
    list_file = next((b / list_name for b in bases if (b / list_name).is_file()), None)
    if list_file is None:
        return None
    base = list_file.parent
    scan = DatasetScan(dataset, base, f"RealBlur release ({list_name})")
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DeblurError(f"cannot read {list_file} ({exc}); re-download the RealBlur test list") from exc
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DeblurError(
                f"{list_file} line {number} should read 'gt_path blur_path' but reads {line.strip()!r}; "
                "re-download the RealBlur test list"
            )
        gt_rel, blur_rel = (PurePosixPath(f.replace("\\", "/")) for f in fields)
        gt, blur = base / gt_rel, base / blur_rel
        gone = [p for p in (blur, gt) if not p.is_file()]
        if gone:
            scan.missing += gone
            continue
        scan.pairs.append(Pair(_realblur_name(blur_rel), blur, gt))
    return scan
