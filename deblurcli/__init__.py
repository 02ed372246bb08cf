"""deblurcli: motion-blur removal with ALGNet, EVSSM and XYScanNet."""

__version__ = "0.1.0"
