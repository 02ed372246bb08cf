"""XYScanNet's forms, in a sibling module so that its torch-free ``SPEC`` (the package) and its ``network``
both read them from here, and the network imports nothing from the package that contains it."""

VARIANTS: tuple[str, ...] = ("plain",)
DEFAULT_VARIANT = "plain"
