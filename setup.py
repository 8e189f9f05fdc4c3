"""Maps the top-level ``kernels/`` and ``models/`` folders under the ``streamvid.`` namespace.

They are never installed as bare ``kernels``/``models`` packages (those names belong to published
projects). Everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

MAPPED = {"kernels": "streamvid.kernels", "models": "streamvid.models"}

packages = find_packages(include=["streamvid", "streamvid.*"])
for folder, name in MAPPED.items():
    packages += [name] + [f"{name}.{p}" for p in find_packages(where=folder)]

setup(
    packages=packages,
    package_dir={"streamvid": "streamvid", **{name: folder for folder, name in MAPPED.items()}},
)
