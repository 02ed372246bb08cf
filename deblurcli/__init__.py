"""deblurcli: motion-blur removal with ALGNet, EVSSM and XYScanNet.

``from deblurcli import Deblurrer, EngineOptions`` is the Python entry point (see ``deblurcli.api``);
both are imported on first use, so ``import deblurcli`` (and ``deblur --version``) stays instant.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Deblurrer", "EngineOptions", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Deblurrer":
        from .api import Deblurrer

        return Deblurrer
    if name == "EngineOptions":
        from .options import EngineOptions

        return EngineOptions
    raise AttributeError(f"module 'deblurcli' has no attribute {name!r}")
