"""Offline image building for the docker backend: base, shared dependency and function layers.

``ImageBuilder(...).build(specs)`` builds (or finds in its cache) one image per function;
see ``docs/docker.md``. Importing this package does not import the Docker SDK.
"""

from __future__ import annotations

from testbed.gateway.runtimes.images.build import ImageBuild, ImageBuilder, image_ref

__all__ = ["ImageBuild", "ImageBuilder", "image_ref"]
