"""Collect the photographs the embedded default model is trained on.

Only photographs (not drawings or renders) whose licences allow it, and none of the evaluation
set (scikit-image's and matplotlib's photos are reserved for `evaluate.py`). They come from
Debian's wallpaper packages, fetched with `apt-get download` and unpacked with `dpkg -x` (no
install, no root needed beyond apt's cache), each file's author and licence as that package's
`/usr/share/doc/PKG/copyright` (and, for KDE's, the wallpaper's metadata.json) states them; the
list below is what `weights/README.md` credits. scikit-learn's two sample photos (CC-BY 2.0) are
added when scikit-learn is installed.

Photos are downscaled to at most 1600 px on the long side: training crops are 128 px taken at a
further random scale of 0.25-1x, and a smaller source decodes fast and keeps memory low when
every worker caches all of them.

    python benchmarks/default_model/prepare_photos.py runs/photos
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

MAX_SIDE = 1600

#: (Debian package, path inside it, author, licence): photographs only.
PHOTOS: list[tuple[str, str, str, str]] = [
    *[("lomiri-wallpapers-16.04", f"usr/share/backgrounds/{file}.jpg", who, lic) for file, who, lic in [
        ("Bridge_by_Sander_Klootwijk", "Sander Klootwijk", "CC-BY-SA-4.0"),
        ("Dragonfly_by_Bolly", '"Bolly"', "CC-BY-SA-4.0"),
        ("Picture_0B_by_freespace", 'Trevor "Freespace"', "CC-BY-4.0"),
        ("Picture_1A_by_freespace", 'Trevor "Freespace"', "CC-BY-4.0"),
        ("Wine_by_Jakkub_Mede", "Jakub Mede", "CC-BY-4.0"),
        ("aitzgorri_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
        ("friends_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
        ("greentock_by_Peter_Nerlich", "Peter Nerlich", "CC-BY-SA-4.0"),
        ("life_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
        ("picosdeeuropa_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
        ("seeding_by_Clements_Engelhardt", "Clemens Engelhardt", "CC0-1.0"),
        ("sunset_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
    ]],
    ("lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus", "CC-BY-SA-3.0"),
    *[("mate-backgrounds", f"usr/share/backgrounds/mate/nature/{name}.jpg", who, "GPL-2+") for name, who in [
        ("Aqua", "Charles Barbin"), ("LadyBird", "Charles Barbin"), ("YellowFlower", "Charles Barbin"),
        ("Garden", "Charles Barbin"), ("Blinds", "Lennart Poettering, Andrea Cimitan"),
        ("Dune", "Marco Cogoni, Hylke Bons"), ("FreshFlower", "Jens Ansorg"),
        ("GreenMeadow", "Timothy Schellhase, Lapo Calamandrei"), ("RainDrops", '"blackcombwhistler07"'),
        ("Storm", "Sergey Nazarov"), ("TwoWings", "Charles Barbin, Hylke Bons"), ("Wood", "Jean-François Fortin Tam"),
    ]],
    *[("plasma-workspace-wallpapers", f"usr/share/wallpapers/{name}/contents/images/{file}", who,
       "GPL-2+ (Debian) / LGPL-3 (metadata)") for name, file, who in [
        ("BytheWater", "2560x1440.jpg", "Maciej Wiklo"), ("ColdRipple", "2560x1440.jpg", "Risto Saukonpää"),
        ("DarkestHour", "2560x1440.jpg", "Risto Saukonpää"), ("EveningGlow", "2560x1440.jpg", "Ian Hex"),
        ("FallenLeaf", "2560x1440.jpg", "Martin Klapetek"), ("Grey", "2560x1440.jpg", "Sigi Sagi"),
        ("Kite", "2560x1440.jpg", "Risto Saukonpää"), ("OneStandsOut", "2560x1440.jpg", "Risto Saukonpää"),
        ("Path", "2560x1440.jpg", "Risto Saukonpää"), ("summer_1am", "2560x1440.jpg", "Risto Saukonpää"),
    ]],
]


def _save(img: Image.Image, path: Path) -> None:
    img = img.convert("RGB")
    scale = MAX_SIDE / max(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    img.save(path)


def main(out: str) -> None:
    dst = Path(out)
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for pkg in sorted({p[0] for p in PHOTOS}):
            subprocess.run(["apt-get", "download", "-q", pkg], cwd=work, check=True, capture_output=True)
            deb = next(work.glob(f"{pkg}_*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(work / pkg)], check=True)
        for pkg, rel, _who, _lic in PHOTOS:
            src = work / pkg / rel
            name = src.parent.parent.parent.name if "wallpapers/" in rel else src.stem
            _save(Image.open(src), dst / f"{pkg.split('-')[0]}_{name}.png")
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        print("scikit-learn not installed: its two sample photos are left out", file=sys.stderr)
    else:
        sample = load_sample_images()
        for name, arr in zip(sample.filenames, sample.images, strict=True):
            _save(Image.fromarray(arr), dst / f"sklearn_{Path(name).stem}.png")
    print(f"wrote {len(list(dst.glob('*.png')))} photos to {dst}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/photos")
