"""A downloaded author checkpoint installed under its registry name, then used by name offline.

Also what a user sees around it: the 80-column ``deblur models`` list, ``models info`` with the
installed file's sha256, ``deblur eval`` beside the paper's figure, and the two steps a 404 names.

The full-size networks take minutes per image on a CPU, so the install-and-run path uses a
registry entry of the same shape as the published ones (a copy of ``algnet-gopro`` with a tiny
config): every code path is the published entries', only the sizes differ. The refusal and
message tests use the real entries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result
from hubserver import StandInHub, hub_server  # noqa: F401 - the fixture, found by name
from PIL import Image
from typer.testing import CliRunner

from deblurcli import hub
from deblurcli.cli import app
from deblurcli.eval.summary import paper_comparison
from deblurcli.models import create, registry

TINY = {"img_channel": 3, "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
        "dec_blk_nums": [1, 1, 1, 1], "d_state": 4}


def _deblur(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _one_line_error(res: Result, code: int) -> str:
    err = res.stderr.strip()
    assert res.exit_code == code, (res.exit_code, err, res.exception)
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    return err


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBLUR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("HF_HUB_OFFLINE", "DEBLUR_OFFLINE", "DEBLUR_HUB_ORG", "DEBLUR_CONFIG", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub, "_WARNED", set())
    # huggingface_hub freezes HF_HUB_OFFLINE when first imported, possibly inside an offline test.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _tiny_entry(monkeypatch: pytest.MonkeyPatch, name: str = "tiny-gopro", config: dict | None = None,
                **fields: object) -> registry.ModelEntry:
    """A published-style entry (algnet-gopro's paper, link and figures) with a tiny network."""
    base = registry.get("algnet-gopro")
    values: dict[str, object] = {
        "name": name, "aliases": (), "config": dict(config or TINY), "variant": "plain", "settings": {},
        "hf_repo": name, "hf_filename": f"{name}.safetensors",
        "convert_command": f"deblur convert AUTHORS.pth --install {name}", **fields}
    entry = dataclasses.replace(base, **values)  # type: ignore[arg-type]
    monkeypatch.setattr(registry, "_BUILTIN", (*registry._BUILTIN, entry))
    return entry


def _authors_checkpoint(path: Path, arch: str = "algnet", config: dict | None = None, seed: int = 0) -> Path:
    """A checkpoint as the authors save theirs: a pickled training dict, DataParallel key prefixes."""
    torch.manual_seed(seed)
    net = create(arch, dict(config or TINY), "plain" if arch == "algnet" else None)
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"params": sd, "iter": 300000}, path)
    return path


def _photo(path: Path, seed: int = 0, size: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------- #
# Install, then run by name offline
# --------------------------------------------------------------------------------------------- #


def test_install_then_run_by_name_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tiny_entry(monkeypatch)
    src = _authors_checkpoint(tmp_path / "ALGNet_GoPro.pth")
    before = src.read_bytes()
    res = _deblur("convert", src, "--install", "tiny-gopro", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    installed = Path(out["installed"]["path"])
    assert installed.parent == tmp_path / "data" / "models" and installed.is_file()
    assert out["installed"]["sha256"] == _sha(installed) and out["installed"]["source_sha256"] == _sha(src)
    assert out["config"] == TINY and out["variant"] == "plain"
    assert src.read_bytes() == before  # the author's file is never touched

    # Offline, with nothing in the Hugging Face cache: the installed file is found by name.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    photo = _photo(tmp_path / "photo.png")
    res = _deblur("run", photo, "--model", "tiny-gopro", "--device", "cpu", "-o", tmp_path / "out.png", "--json")
    assert res.exit_code == 0, res.stderr
    assert Image.open(tmp_path / "out.png").size == (32, 32)
    resolved = hub.resolve("tiny-gopro", progress=False)
    assert resolved.source == "installed" and resolved.path == installed and resolved.sha256 == _sha(installed)
    assert not (tmp_path / "hf-home").exists() or not any((tmp_path / "hf-home").rglob("*.safetensors"))

    # Listed as installed; info shows the file and its sha256.
    rows = {r["name"]: r for r in json.loads(_deblur("models", "--json").stdout)}
    assert rows["tiny-gopro"]["where"] == "installed" and rows["tiny-gopro"]["installed"]["sha256"] == _sha(installed)
    line = next(ln for ln in _deblur("models").stdout.splitlines() if ln.startswith("tiny-gopro "))
    assert line.split()[-1] == "installed"
    info = _deblur("models", "info", "tiny-gopro")
    assert info.exit_code == 0 and _sha(installed) in info.stdout and str(installed) in info.stdout

    # Installing again needs --overwrite; a file damaged afterwards is refused, not run.
    err = _one_line_error(_deblur("convert", src, "--install", "tiny-gopro"), 1)
    assert "already installed" in err and "--overwrite" in err
    data = bytearray(installed.read_bytes())
    data[-1] ^= 0xFF
    installed.write_bytes(bytes(data))
    err = _one_line_error(_deblur("run", photo, "--model", "tiny-gopro", "--device", "cpu",
                                  "-o", tmp_path / "again.png"), 1)
    assert "damaged or replaced" in err and "deblur convert AUTHORS.pth --install tiny-gopro --overwrite" in err
    res = _deblur("convert", src, "--install", "tiny-gopro", "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert hub.resolve("tiny-gopro", progress=False).source == "installed"


def test_installed_file_carries_the_entrys_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A published entry runs its paper's test-time form; the installed file must say which."""
    pool = {"train_size": [64, 64], "base_size": [96, 96], "fast_imp": False}
    _tiny_entry(monkeypatch, variant="local", settings={"local_pool": pool})
    src = _authors_checkpoint(tmp_path / "a.pth")
    res = _deblur("convert", src, "--install", "tiny-gopro", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["variant"] == "local"
    from deblurcli.weights import load_model

    _, spec = load_model(hub.resolve("tiny-gopro", progress=False).path)
    assert spec.variant == "local" and spec.settings["local_pool"]["train_size"] == [64, 64]


# --------------------------------------------------------------------------------------------- #
# Refusals
# --------------------------------------------------------------------------------------------- #


def test_mismatched_checkpoint_is_refused_naming_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _authors_checkpoint(tmp_path / "small.pth")
    err = _one_line_error(_deblur("convert", src, "--install", "algnet-gopro"), 1)
    assert str(src) in err and "algnet-gopro expects algnet with" in err
    assert '"width" 4' not in err and "width 4" in err and "width 32" in err  # both configurations named
    assert not (tmp_path / "data" / "models" / "algnet-gopro.safetensors").exists()

    err = _one_line_error(_deblur("convert", src, "--install", "evssm-gopro"), 1)
    assert "this checkpoint is algnet, but evssm-gopro expects evssm" in err

    # Same architecture, another size: the message points at the entry it does fit.
    _tiny_entry(monkeypatch, "tiny-a")
    _tiny_entry(monkeypatch, "tiny-b", config={**TINY, "width": 8})
    err = _one_line_error(_deblur("convert", src, "--install", "tiny-b"), 1)
    assert "width 4" in err and "width 8" in err and "it fits tiny-a" in err
    assert not (tmp_path / "data" / "models").exists() or not list((tmp_path / "data" / "models").iterdir())


def test_install_usage_errors(tmp_path: Path) -> None:
    src = _authors_checkpoint(tmp_path / "small.pth")
    assert "did you mean" in _one_line_error(_deblur("convert", src, "--install", "algnett"), 2)
    assert "embedded" in _one_line_error(_deblur("convert", src, "--install", "default"), 2)
    assert "drop DST" in _one_line_error(_deblur("convert", src, tmp_path / "x.safetensors", "--install",
                                                 "algnet-gopro"), 2)
    assert "--install NAME" in _one_line_error(_deblur("convert", src), 2)


# --------------------------------------------------------------------------------------------- #
# The Hub cannot give it: two steps
# --------------------------------------------------------------------------------------------- #


def test_404_and_offline_name_the_two_steps(hub_server: StandInHub, tmp_path: Path,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    monkeypatch.setenv("DEBLUR_HUB_ORG", "testorg")
    photo = _photo(tmp_path / "p.png")
    entry = registry.get("evssm-realblur-j")
    for offline in (False, True):
        if offline:
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        res = _deblur("run", photo, "--model", "evssm-realj", "--device", "cpu", "-o", tmp_path / "o.png")
        assert res.exit_code == 1
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]  # after "downloading ..."
        assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
        err = errors[0]
        assert ("not found on" in err) != offline and ("HF_HUB_OFFLINE=1" in err) == offline
        assert re.findall(r"\d\) ", err) == ["1) ", "2) "], err
        first, second = err.split("1) ", 1)[1].split("2) ", 1)
        assert entry.source_url and entry.source_url in first
        assert second == "run `deblur convert AUTHORS_EVSSM_REALJ.pth --install evssm-realblur-j`"
    assert len([r for r in hub_server.requests if "evssm-realblur-j" in r[1]]) >= 1  # the 404 was a real request


# --------------------------------------------------------------------------------------------- #
# deblur models, models info, eval beside the paper
# --------------------------------------------------------------------------------------------- #


def test_models_list_fits_80_columns_one_line_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # The longest real values: a long default description must still fit.
    res = _deblur("models", env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80, max(lines, key=len)
    names = [e.name for e in registry.entries()]
    model_lines = [ln for ln in lines if ln.split(" ", 1)[0] in names]
    assert [ln.split()[0] for ln in model_lines] == names  # one line each, in order
    by_name = {ln.split()[0]: ln.split() for ln in model_lines}
    # Not published on the Hub and no mirror configured: a download would 404, so it says manual.
    assert by_name["algnet-b-gopro"][1:] == ["algnet", "213.8M", "GoPro", "34.05", "manual"]
    assert any(ln.startswith("manual: ") and "deblur models info NAME" in ln for ln in lines)
    assert by_name["evssm-realblur-j"][4] == "-"  # no GoPro figure for a RealBlur model
    assert by_name["xyscannetp-gopro"][4] == "33.91*"
    assert any(ln.startswith("* ") and "XYScanNetP" in ln for ln in lines)
    assert not any("drive.google.com" in ln or "license" in ln.lower() for ln in lines)  # those are for info
    # --json keeps every registry field.
    rows = json.loads(_deblur("models", "--json").stdout)
    for row in rows:
        entry = registry.get(row["name"])
        for key, value in entry.to_dict().items():
            if key != "paper":
                assert row[key] == value, (row["name"], key)


def test_models_info_shows_the_papers_figures_and_links() -> None:
    text = _deblur("models", "info", "xyscannetp-gopro").stdout
    assert "GoPro (trained on GoPro): PSNR 33.91 dB, SSIM 0.968" in text
    assert "not this released XYScanNetP" in text and "RTX 3090" in text
    assert registry.get("xyscannetp-gopro").source_url in text  # whole, copyable
    assert "deblur convert best_XYScanNet_stage2.pth --install xyscannetp-gopro" in text
    text = _deblur("models", "info", "evssm-gopro").stdout
    assert "HIDE (trained on GoPro): PSNR 31.99 dB, SSIM 0.9503" in text
    assert re.search(r"paper_cost\s+not stated in the paper", text)


def test_paper_comparison_same_test_set_or_says_why_not() -> None:
    def result(dataset: str, psnr: float = 30.0, ssim: float = 0.9) -> dict:
        return {"dataset": dataset, "summary": {"psnr": psnr, "ssim": ssim}}

    got = paper_comparison(result("gopro", 33.0, 0.95), registry.get("algnet-b"))
    assert got["figures"]["psnr"] == 34.05 and got["difference"] == {"psnr": -1.05, "ssim": -0.019}
    assert "why_none" not in got and got["note"] is None
    got = paper_comparison(result("realblur-j"), registry.get("algnet"))  # GoPro-trained, tested on RealBlur-J
    assert got["figures"]["psnr"] == 29.12 and got["figures"]["trained_on"] == "GoPro"
    got = paper_comparison(result("gopro"), registry.get("evssm-realblur-j"))
    assert got["figures"] is None and "no figure for EVSSM trained on RealBlur-J on GoPro" in got["why_none"]
    got = paper_comparison(result("realblur-j"), registry.get("xyscannetp-realblur-j"))
    assert "no PSNR/SSIM" in got["why_none"] and "shift-tolerant LPIPS 0.041" in got["why_none"]
    assert "XYScanNetP" in got["note"]
    assert "not a registry model" in paper_comparison(result("gopro"), None)["why_none"]
    assert "no paper" in paper_comparison(result("gopro"), registry.default_entry())["why_none"]


def test_eval_prints_the_paper_beside_the_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tiny_entry(monkeypatch)
    assert _deblur("convert", _authors_checkpoint(tmp_path / "a.pth"), "--install", "tiny-gopro").exit_code == 0
    seq = tmp_path / "GOPRO_Large" / "test" / "GOPR0001_00_00"
    for sub in ("blur", "sharp"):
        (seq / sub).mkdir(parents=True)
        _photo(seq / sub / "000001.png", seed=0 if sub == "sharp" else 1)
    res = _deblur("eval", "--dataset", "gopro", "--data-dir", tmp_path / "GOPRO_Large", "--model", "tiny-gopro",
                  "--device", "cpu", "--report", tmp_path / "r.json", env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.stderr
    row = next(ln for ln in res.stdout.splitlines() if "PSNR (dB)" in ln)
    measured, paper, diff = re.findall(r"[-+]?\d+\.\d+", row)
    assert paper == "33.49" and float(diff) == pytest.approx(float(measured) - 33.49, abs=0.011)
    assert "paper: ALGNet's published figures, trained on GoPro" in res.stdout
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["paper"]["figures"]["psnr"] == 33.49
    res = _deblur("eval", "--dataset", "pairs", "--data-dir", seq / "blur", "--sharp-dir", seq / "sharp",
                  "--model", "tiny-gopro", "--device", "cpu", env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.stderr
    assert "paper: the paper states no figure for ALGNet trained on GoPro on pairs" in res.stdout


def test_unpublished_models_are_listed_as_manual_installs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hub repo the package pins no file for would 404 on download: the listing and `models info`
    say so up front, unless the user names another Hub organisation (a re-host may have it)."""
    entry = registry.get("evssm-gopro")
    assert hub.where(entry) == "manual"
    info = _deblur("models", "info", "evssm-gopro")
    assert info.exit_code == 0, info.stderr
    line = next(ln for ln in info.stdout.splitlines() if ln.startswith("download_command"))
    assert "none yet" in line and "deblur download" not in line
    assert "deblur convert net_g_GoPro.pth --install evssm-gopro" in info.stdout

    assert hub.where(dataclasses.replace(entry, sha256="0" * 64)) == "downloadable"  # published and pinned
    monkeypatch.setenv("DEBLUR_HUB_ORG", "someone-else")
    assert hub.where(entry) == "downloadable"
    listing = _deblur("models")
    assert not any(ln.startswith("manual") for ln in listing.stdout.splitlines())
    line = next(ln for ln in _deblur("models", "info", "evssm-gopro").stdout.splitlines()
                if ln.startswith("download_command"))
    assert line.split()[1:] == ["deblur", "download", "evssm-gopro"]
